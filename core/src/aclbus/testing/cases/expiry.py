"""Per-message TTL: a message that expired before delivery is not delivered."""

from __future__ import annotations

from typing import ClassVar

from aclbus.backend import Backend, Capabilities, SubscriptionSpec
from aclbus.testing.cases.base import BackendTestcase
from aclbus.testing.collector import Deliveries

__all__ = ["TTLTestcase"]


class TTLTestcase(BackendTestcase):
    """``publish(ttl=...)`` on a stream that allows message TTLs."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, ttl=True)

    async def test_expired_message_is_not_delivered(self, backend: Backend) -> None:
        """Stored with ``ttl=1``, subscribed to after 2.5 s: only the message without TTL."""
        subject = self.subject("ttl")
        await backend.publish(subject, {}, b"short", ttl=1.0)
        await backend.publish(subject, {}, b"forever")
        await self.advance(2.5)
        got = Deliveries()
        await backend.subscribe(SubscriptionSpec(subject), got)
        await got.wait_for(1)
        await self.advance(0.5)
        assert got.bodies == [b"forever"]

    async def test_message_within_ttl_is_delivered(self, backend: Backend) -> None:
        """A message whose TTL has not run out is delivered as usual."""
        subject = self.subject("fresh")
        await backend.publish(subject, {}, b"fresh", ttl=60.0)
        got = Deliveries()
        await backend.subscribe(SubscriptionSpec(subject), got)
        await got.wait_for(1)
        assert got.bodies == [b"fresh"]
