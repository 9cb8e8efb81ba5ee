"""Durable consumers: a named consumer keeps its position while nobody is attached."""

from __future__ import annotations

from typing import ClassVar

from aclbus.backend import Backend, Capabilities, SubscriptionSpec
from aclbus.testing.cases.base import BackendTestcase, publish_numbered
from aclbus.testing.collector import Deliveries, eventually

__all__ = ["DurableTestcase"]


class DurableTestcase(BackendTestcase):
    """Messages published while a durable consumer is down arrive when it comes back."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, durable=True, ack=True)

    async def test_messages_published_while_down_arrive_later(self, backend: Backend) -> None:
        """Acked before leaving: on return, only what was published meanwhile arrives."""
        subject = self.subject("down")
        spec = SubscriptionSpec(subject, durable="svc")
        before = Deliveries()
        sub = await backend.subscribe(spec, before)
        await backend.publish(subject, {}, b"0")
        await before.wait_for(1)
        await self.advance(0.2)
        await sub.unsubscribe()
        await publish_numbered(backend, subject, 2, start=1)
        after = Deliveries()
        await backend.subscribe(spec, after)
        await after.wait_for(2)
        await self.advance(0.5)
        assert before.bodies == [b"0"]
        assert after.bodies == [b"1", b"2"]

    async def test_unacked_before_leaving_is_redelivered_on_return(self, backend: Backend) -> None:
        """A delivery left unsettled by a subscription that left comes back to the next one."""
        subject = self.subject("unacked")
        spec = SubscriptionSpec(subject, durable="svc", ack_wait=2.0)
        before = Deliveries(settle=None)
        sub = await backend.subscribe(spec, before)
        await backend.publish(subject, {}, b"job")
        [first] = await before.wait_for(1)
        await sub.unsubscribe()
        after = Deliveries()
        await backend.subscribe(spec, after)
        await self.advance(3.0)
        [again] = await after.wait_for(1)
        assert (again.body, again.sequence) == (b"job", first.sequence)
        assert again.attempt == 2

    async def test_durables_are_independent(self, backend: Backend) -> None:
        """Two durable consumers on one subject each get every message."""
        subject = self.subject("two")
        one, two = Deliveries(), Deliveries()
        await backend.subscribe(SubscriptionSpec(subject, durable="one"), one)
        await backend.subscribe(SubscriptionSpec(subject, durable="two"), two)
        await publish_numbered(backend, subject, 5)
        await one.wait_for(5)
        await two.wait_for(5)
        expected = [str(i).encode() for i in range(5)]
        assert sorted(one.bodies) == expected
        assert sorted(two.bodies) == expected

    async def test_ephemeral_consumer_starts_over(self, backend: Backend) -> None:
        """Without ``durable``, a new subscription is a new consumer: it starts from the top."""
        subject = self.subject("ephemeral")
        await publish_numbered(backend, subject, 2)
        first = Deliveries()
        sub = await backend.subscribe(SubscriptionSpec(subject), first)
        await first.wait_for(2)
        await sub.unsubscribe()
        second = Deliveries()
        await backend.subscribe(SubscriptionSpec(subject), second)
        await second.wait_for(2)
        assert sorted(second.bodies) == [b"0", b"1"]

    async def test_consumer_states_report_what_is_unacked_and_then_none(
        self, backend: Backend
    ) -> None:
        """`Backend.consumer_states` reports unsettled deliveries, and none once acked.

        Deliveries held unsettled are ``ack_pending``; once acked, nothing is pending or
        unacked; the consumer is reported once.
        """
        subject = self.subject("states")
        held = Deliveries(settle=None)
        spec = SubscriptionSpec(subject, durable="meter")
        await backend.subscribe(spec, held)
        await publish_numbered(backend, subject, 3)
        deliveries = await held.wait_for(3)

        async def meter() -> list[tuple[int, int]]:
            return [
                (state.pending, state.ack_pending)
                for state in await backend.consumer_states()
                if state.consumer == "meter"
            ]

        async def unacked() -> bool:
            return await meter() == [(0, 3)]

        await eventually(unacked, what="three deliveries reported unacked")
        for received in deliveries:
            await received.ack()

        async def settled() -> bool:
            return await meter() == [(0, 0)]

        await eventually(settled, what="nothing pending once acked")
