"""The counters of the dedup plugin, per bus."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["DedupStats"]


@dataclass(slots=True)
class DedupStats:
    """What the dedup plugin of one bus did since the bus started.

    Attributes:
        publish_retries: Ambiguous publishes sent again with the same message id.
        publish_duplicates: PubAcks that said ``duplicate``: the broker already had the id.
        claimed: Deliveries whose handler ran after a fresh claim (or a released one).
        taken_over: Deliveries whose handler ran after taking over a stale claim (the
            claimant died or hung past its claim timeout).
        skipped: Deliveries of a message already done, acked without running the handler.
        busy: Deliveries nacked because another consumer was running the same message.
        released: Claims given back because the handler failed or asked for a retry.
        lost: Claims another consumer took over while their handler still ran: that
            message ran twice (raise ``claim_timeout`` or call ``in_progress()``).
        held: Deliveries that could not reach the KV bucket and were held (kept from
            redelivery with ``in_progress()``, no delivery attempt spent) while their claim
            was retried.
        late_done: ``done`` records written in the background, after the delivery had been
            acked, because the bucket was out of reach for ``done_wait``.
        abandoned: ``done`` writes given up for good (the bus stopped, or the record's window
            was over): the record stays ``processing`` until it goes stale or expires.
        kv_errors: KV operations that failed, each attempt counted (retried, or given up).
    """

    publish_retries: int = 0
    publish_duplicates: int = 0
    claimed: int = 0
    taken_over: int = 0
    skipped: int = 0
    busy: int = 0
    released: int = 0
    lost: int = 0
    held: int = 0
    late_done: int = 0
    abandoned: int = 0
    kv_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return asdict(self)
