"""What a backend can do: `Capabilities`, which a plugin or a test names to say what it needs."""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["Capabilities"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do. A plugin or test that needs a capability names it here.

    Every flag defaults to False, so ``Capabilities(ack=True)`` reads as "needs ack".
    """

    persistent: bool = False
    """Messages published ``at_least_once`` are stored and survive a consumer being away."""
    ack: bool = False
    """Explicit ack; an unacked message is redelivered after ``ack_wait``."""
    nack_delay: bool = False
    """``nack(delay=...)`` holds the redelivery back for the delay."""
    term: bool = False
    """``term()`` stops all further delivery of a message."""
    in_progress: bool = False
    """``in_progress()`` resets the ack timer of a long handler."""
    max_deliver: bool = False
    """A message is delivered at most ``max_deliver`` times."""
    backoff: bool = False
    """Redeliveries after an ack timeout follow the subscription's ``backoff`` schedule."""
    dedup_window: bool = False
    """A second publish with the same message id within the window is not stored again."""
    ordered: bool = False
    """Messages of one subject are delivered in publish order (with one handler at a time)."""
    ttl: bool = False
    """Per-message TTL: an expired message is not delivered."""
    kv: bool = False
    """Key-value buckets with revisions, compare-and-set and watch."""
    request_reply: bool = False
    """Requests with a reply, a timeout and an immediate failure when nobody listens."""
    queue_groups: bool = False
    """Subscriptions in one queue group split the messages (competing consumers)."""
    wildcards: bool = False
    """Subscriptions may use ``*`` and ``>`` wildcards."""
    durable: bool = False
    """A named consumer keeps its position while no subscription is attached."""
    fault_injection: bool = False
    """Faults (duplicates, reordering, drops, delays) can be injected deterministically."""

    def missing(self, required: Capabilities) -> list[str]:
        """The names of the capabilities ``required`` asks for that this set lacks."""
        return [
            f.name for f in fields(self) if getattr(required, f.name) and not getattr(self, f.name)
        ]

    def names(self) -> list[str]:
        """The names of the capabilities present."""
        return [f.name for f in fields(self) if getattr(self, f.name)]
