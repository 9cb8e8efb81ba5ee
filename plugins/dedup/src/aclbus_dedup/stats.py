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
        kv_errors: KV operations that failed (the delivery was nacked, or the record not
            written).
    """

    publish_retries: int = 0
    publish_duplicates: int = 0
    claimed: int = 0
    taken_over: int = 0
    skipped: int = 0
    busy: int = 0
    released: int = 0
    lost: int = 0
    kv_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return asdict(self)
