"""The delivery as the handler sees it while its message is claimed.

Settling it settles the claim first: an ack records the message as done *before* the ack goes
out, so a crash between the two leaves a record that makes the redelivery skip the handler
(the other order would run it twice); a nack or term releases the claim first, so the retry
(or a replay from the dead-letter queue) runs the handler again; ``in_progress`` extends it.
While the ``done`` write is retried (the bucket does not answer), the wrapped delivery is kept
from redelivery with ``in_progress()`` (see `aclbus_dedup.claims.Claim.finish`).
"""

from __future__ import annotations

from aclbus.backend import Received
from aclbus_dedup.claims import Claim

__all__ = ["ClaimedReceived"]


class ClaimedReceived(Received):
    """Wraps a backend's delivery; everything but settlement is the wrapped one's.

    Args:
        inner: The backend's delivery.
        claim: The claim held for its message.
    """

    __slots__ = ("claim", "inner")

    def __init__(self, inner: Received, claim: Claim) -> None:
        super().__init__(
            inner.subject,
            inner.headers,
            inner.body,
            reply=inner.reply,
            attempt=inner.attempt,
            sequence=inner.sequence,
            mode=inner.mode,
            stream=inner.stream,
        )
        self.inner = inner
        self.claim = claim

    async def _ack(self) -> None:
        await self.claim.finish(self.inner)
        await self.inner.ack()

    async def _nack(self, delay: float | None) -> None:
        await self.claim.release()
        await self.inner.nack(delay)

    async def _term(self, reason: str | None) -> None:
        await self.claim.release()
        await self.inner.term(reason)

    async def _in_progress(self) -> None:
        await self.claim.extend()
        await self.inner.in_progress()
