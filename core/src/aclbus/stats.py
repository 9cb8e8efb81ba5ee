"""`BusStats`: the counters of one bus, kept by its publish and consume pipelines."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["BusStats"]


@dataclass(slots=True)
class BusStats:
    """Counters of one bus since it was made.

    Attributes:
        published: Messages published (each receiver of a send counts once).
        requests: Requests sent.
        delivered: Deliveries received by this bus' agents.
        handled: Deliveries a handler finished without raising.
        failed: Deliveries whose handler (or middleware) raised.
        unhandled: Deliveries no handler matched.
        decode_errors: Deliveries that were not valid ACL messages.
        expired: Deliveries dropped because their TTL had run out.
        dead_lettered: Messages this bus put in the dead-letter queue.
    """

    published: int = 0
    requests: int = 0
    delivered: int = 0
    handled: int = 0
    failed: int = 0
    unhandled: int = 0
    decode_errors: int = 0
    expired: int = 0
    dead_lettered: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return asdict(self)
