"""Publish and subscribe, in both delivery modes."""

from __future__ import annotations

from typing import ClassVar

import pytest

from aclbus.backend import Backend, Capabilities, DeliveryMode, SubscriptionSpec
from aclbus.errors import MessageTooLarge, NoStream
from aclbus.testing.cases.base import ALO, AMO, BackendTestcase, publish_numbered
from aclbus.testing.collector import Deliveries

__all__ = ["PersistentPubSubTestcase", "PubSubTestcase"]


class PubSubTestcase(BackendTestcase):
    """``at_most_once``: delivered to the subscriptions present at publish time, not stored."""

    async def test_at_most_once_reaches_subscriber(self, backend: Backend) -> None:
        """A message reaches a subscriber with its subject, headers and body as sent."""
        subject = self.core_subject("amo")
        got = Deliveries()
        await backend.subscribe(SubscriptionSpec(subject, mode=AMO), got)
        ack = await backend.publish(subject, {"x-kit": "v1"}, b"hello", mode=AMO)
        [received] = await got.wait_for(1)
        assert received.subject == subject
        assert received.headers["x-kit"] == "v1"
        assert received.body == b"hello"
        assert received.mode is DeliveryMode.AT_MOST_ONCE
        assert received.attempt == 1
        assert received.sequence is None
        assert (ack.stream, ack.sequence, ack.duplicate) == (None, None, False)

    async def test_at_most_once_empty_body(self, backend: Backend) -> None:
        """An empty body and no headers travel as such."""
        subject = self.core_subject("empty")
        got = Deliveries()
        await backend.subscribe(SubscriptionSpec(subject, mode=AMO), got)
        await backend.publish(subject, {}, b"", mode=AMO)
        [received] = await got.wait_for(1)
        assert received.body == b""

    async def test_at_most_once_is_not_stored(self, backend: Backend) -> None:
        """A message published before anyone subscribed is lost, not delivered later."""
        subject = self.core_subject("lost")
        await backend.publish(subject, {}, b"before", mode=AMO)
        got = Deliveries()
        await backend.subscribe(SubscriptionSpec(subject, mode=AMO), got)
        await self.advance(0.5)
        await backend.publish(subject, {}, b"after", mode=AMO)
        await got.wait_for(1)
        await self.advance(0.5)
        assert got.bodies == [b"after"]

    async def test_at_most_once_settlement_is_harmless(self, backend: Backend) -> None:
        """``ack``/``nack``/``term``/``in_progress`` on an at-most-once delivery do nothing."""
        subject = self.core_subject("settle")
        got = Deliveries(settle="nack")
        await backend.subscribe(SubscriptionSpec(subject, mode=AMO), got)
        await backend.publish(subject, {}, b"once", mode=AMO)
        [received] = await got.wait_for(1)
        await received.in_progress()
        await received.ack()
        await self.advance(1.0)
        assert got.bodies == [b"once"]

    async def test_every_subscriber_gets_every_message(self, backend: Backend) -> None:
        """Independent subscriptions on one subject each receive all its messages."""
        subject = self.core_subject("fanout")
        collectors = [Deliveries() for _ in range(3)]
        for got in collectors:
            await backend.subscribe(SubscriptionSpec(subject, mode=AMO), got)
        await publish_numbered(backend, subject, 10, mode=AMO)
        for got in collectors:
            await got.wait_for(10)
        await self.advance(0.5)
        for got in collectors:
            assert sorted(got.bodies) == sorted(str(i).encode() for i in range(10))

    async def test_other_subjects_are_not_delivered(self, backend: Backend) -> None:
        """A subscription receives its subject only."""
        mine, other = self.core_subject("mine"), self.core_subject("other")
        got = Deliveries()
        await backend.subscribe(SubscriptionSpec(mine, mode=AMO), got)
        await backend.publish(other, {}, b"other", mode=AMO)
        await backend.publish(mine, {}, b"mine", mode=AMO)
        await got.wait_for(1)
        await self.advance(0.5)
        assert got.bodies == [b"mine"]

    async def test_message_too_large_is_refused(self, backend: Backend) -> None:
        """A publish over the broker's ``max_payload`` raises `MessageTooLarge`."""
        limit = backend.max_payload
        if limit is None:
            pytest.skip(f"backend {self.name!r} declares no max_payload")
        with pytest.raises(MessageTooLarge) as caught:
            await backend.publish(self.core_subject("big"), {}, b"x" * (limit + 1), mode=AMO)
        assert caught.value.limit <= limit


class PersistentPubSubTestcase(BackendTestcase):
    """``at_least_once``: stored in the stream that captures the subject, then delivered."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True)

    async def test_publish_is_stored_with_increasing_sequence(self, backend: Backend) -> None:
        """The publish ack names the stream and a sequence that grows with each message."""
        acks = await publish_numbered(backend, self.subject("seq"), 3)
        assert {ack.stream for ack in acks} == {self.stream_spec().name}
        sequences = [ack.sequence for ack in acks if ack.sequence is not None]
        assert len(sequences) == 3, "an at_least_once publish ack must carry a sequence"
        assert sequences == sorted(sequences)
        assert len(set(sequences)) == 3
        assert not any(ack.duplicate for ack in acks)

    async def test_stored_messages_reach_a_later_subscriber(self, backend: Backend) -> None:
        """A subscriber that starts after the publishes gets them, with their sequences."""
        subject = self.subject("later")
        acks = await publish_numbered(backend, subject, 3)
        got = Deliveries()
        await backend.subscribe(SubscriptionSpec(subject, mode=ALO), got)
        received = await got.wait_for(3)
        assert sorted(r.body for r in received) == [b"0", b"1", b"2"]
        assert {r.sequence for r in received} == {ack.sequence for ack in acks}
        assert all(r.mode is DeliveryMode.AT_LEAST_ONCE and r.attempt == 1 for r in received)

    async def test_headers_and_body_are_kept(self, backend: Backend) -> None:
        """A stored message comes back with its subject, headers and body unchanged."""
        subject = self.subject("kept")
        body = bytes(range(256))
        await backend.publish(subject, {"x-a": "1", "x-b": "two words"}, body)
        got = Deliveries()
        await backend.subscribe(SubscriptionSpec(subject), got)
        [received] = await got.wait_for(1)
        assert received.subject == subject
        assert received.headers["x-a"] == "1"
        assert received.headers["x-b"] == "two words"
        assert received.body == body

    async def test_deliver_new_skips_stored_messages(self, backend: Backend) -> None:
        """``deliver="new"`` starts after the messages stored before subscribing."""
        subject = self.subject("new")
        await backend.publish(subject, {}, b"old")
        got = Deliveries()
        await backend.subscribe(SubscriptionSpec(subject, deliver="new"), got)
        await backend.publish(subject, {}, b"fresh")
        await got.wait_for(1)
        await self.advance(0.5)
        assert got.bodies == [b"fresh"]

    async def test_publish_without_stream_raises_no_stream(self, backend: Backend) -> None:
        """``at_least_once`` to a subject no stream captures raises `NoStream`, naming it."""
        subject = self.core_subject("nowhere")
        with pytest.raises(NoStream) as caught:
            await backend.publish(subject, {}, b"x", mode=ALO)
        assert caught.value.subject == subject
