"""Publish-side deduplication: one message id is stored once within the stream's window."""

from __future__ import annotations

from typing import ClassVar

from aclbus.backend import Backend, Capabilities, SubscriptionSpec
from aclbus.testing.cases.base import BackendTestcase
from aclbus.testing.collector import Deliveries

__all__ = ["DedupTestcase"]


class DedupTestcase(BackendTestcase):
    """A second publish with the same ``msg_id`` within ``duplicate_window`` stores nothing."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, dedup_window=True)

    async def test_same_msg_id_is_stored_once(self, backend: Backend) -> None:
        """The repeat is acked as a duplicate and never delivered; other ids are stored."""
        subject = self.subject("dedup")
        first = await backend.publish(subject, {}, b"first", msg_id="m-1")
        again = await backend.publish(subject, {}, b"again", msg_id="m-1")
        other = await backend.publish(subject, {}, b"other", msg_id="m-2")
        assert first.duplicate is False
        assert again.duplicate is True
        assert other.duplicate is False
        assert first.sequence is not None
        assert other.sequence is not None
        assert other.sequence > first.sequence
        got = Deliveries()
        await backend.subscribe(SubscriptionSpec(subject), got)
        await got.wait_for(2)
        await self.advance(0.5)
        assert got.bodies == [b"first", b"other"]

    async def test_without_msg_id_nothing_is_deduplicated(self, backend: Backend) -> None:
        """Identical publishes without a ``msg_id`` are all stored."""
        subject = self.subject("nodedup")
        acks = [await backend.publish(subject, {}, b"same") for _ in range(3)]
        assert not any(ack.duplicate for ack in acks)
        got = Deliveries()
        await backend.subscribe(SubscriptionSpec(subject), got)
        await got.wait_for(3)
        assert got.bodies == [b"same"] * 3

    async def test_msg_id_is_stored_again_after_the_window(self, backend: Backend) -> None:
        """Once ``duplicate_window`` has passed, the same ``msg_id`` is a new message."""
        spec = self.stream_spec(
            name=f"CONF_{self.namespace.upper()}_DW",
            subjects=(f"conf.{self.namespace}.dw.>",),
            duplicate_window=1.0,
        )
        await backend.provision(spec)
        subject = f"conf.{self.namespace}.dw.x"
        first = await backend.publish(subject, {}, b"first", msg_id="m-1")
        await self.advance(2.5)
        later = await backend.publish(subject, {}, b"later", msg_id="m-1")
        assert first.stream == later.stream == spec.name
        assert later.duplicate is False
        got = Deliveries()
        await backend.subscribe(SubscriptionSpec(subject), got)
        await got.wait_for(2)
        assert got.bodies == [b"first", b"later"]
