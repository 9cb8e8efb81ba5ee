"""Subscriptions: unsubscribe, concurrent handling, wildcards."""

from __future__ import annotations

import asyncio

import pytest

from aclbus.backend import Backend, Received, SubscriptionSpec
from aclbus.testing.cases.base import ALO, AMO, BackendTestcase, publish_numbered
from aclbus.testing.collector import Collector, Deliveries, eventually

__all__ = ["SubscriptionTestcase"]


class SubscriptionTestcase(BackendTestcase):
    """What a subscription is: it can stop, it can run its handler concurrently."""

    async def test_unsubscribe_stops_delivery(self, backend: Backend) -> None:
        """After ``unsubscribe`` the subscription is inactive and receives nothing more."""
        subject = self.core_subject("unsub")
        got, witness = Deliveries(), Deliveries()
        sub = await backend.subscribe(SubscriptionSpec(subject, mode=AMO), got)
        await backend.subscribe(SubscriptionSpec(subject, mode=AMO), witness)
        assert sub.active
        await backend.publish(subject, {}, b"1", mode=AMO)
        await got.wait_for(1)
        await sub.unsubscribe()
        assert not sub.active
        await backend.publish(subject, {}, b"2", mode=AMO)
        await witness.wait_for(2)  # the second message was published and delivered elsewhere
        await self.advance(0.5)
        assert got.bodies == [b"1"]

    @pytest.mark.aclbus_requires("persistent")
    async def test_unsubscribe_stops_persistent_delivery(self, backend: Backend) -> None:
        """The same holds for an ``at_least_once`` subscription."""
        subject = self.subject("unsub")
        got, witness = Deliveries(), Deliveries()
        sub = await backend.subscribe(SubscriptionSpec(subject, mode=ALO), got)
        await backend.subscribe(SubscriptionSpec(subject, mode=ALO), witness)
        await backend.publish(subject, {}, b"1")
        await got.wait_for(1)
        await sub.unsubscribe()
        assert not sub.active
        await backend.publish(subject, {}, b"2")
        await witness.wait_for(2)
        await self.advance(0.5)
        assert got.bodies == [b"1"]

    async def test_unsubscribe_twice_is_harmless(self, backend: Backend) -> None:
        """A second ``unsubscribe`` does nothing."""
        sub = await backend.subscribe(
            SubscriptionSpec(self.core_subject("twice"), mode=AMO), Deliveries()
        )
        await sub.unsubscribe()
        await sub.unsubscribe()
        assert not sub.active

    async def test_concurrency_runs_handlers_at_the_same_time(self, backend: Backend) -> None:
        """With ``concurrency=4`` the handler holds four deliveries at once."""
        subject = self.core_subject("conc")
        gate = asyncio.Event()
        running: list[bytes] = []
        done: Collector[bytes] = Collector()

        async def handler(received: Received) -> None:
            running.append(received.body)
            await gate.wait()
            done.add(received.body)
            await received.ack()

        await backend.subscribe(SubscriptionSpec(subject, mode=AMO, concurrency=4), handler)
        await publish_numbered(backend, subject, 8, mode=AMO)
        await eventually(lambda: len(running) >= 4, what="4 handlers running at once")
        assert len(done) == 0
        gate.set()
        handled = await done.wait_for(8)
        assert sorted(handled) == sorted(str(i).encode() for i in range(8))

    async def test_concurrency_one_runs_one_at_a_time(self, backend: Backend) -> None:
        """With ``concurrency=1`` a delivery is handed over only when the previous returned."""
        subject = self.core_subject("serial")
        in_flight = 0
        peak = 0
        done: Collector[bytes] = Collector()

        async def handler(received: Received) -> None:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            for _ in range(3):
                await asyncio.sleep(0)
            in_flight -= 1
            done.add(received.body)

        await backend.subscribe(SubscriptionSpec(subject, mode=AMO, concurrency=1), handler)
        await publish_numbered(backend, subject, 10, mode=AMO)
        await done.wait_for(10)
        assert peak == 1

    @pytest.mark.aclbus_requires("wildcards")
    async def test_wildcards_match_tokens(self, backend: Backend) -> None:
        """``*`` matches one token, ``>`` one or more."""
        one, rest = Deliveries(), Deliveries()
        await backend.subscribe(SubscriptionSpec(self.core_subject("w", "*"), mode=AMO), one)
        await backend.subscribe(SubscriptionSpec(self.core_subject("w", ">"), mode=AMO), rest)
        await backend.publish(self.core_subject("w"), {}, b"none", mode=AMO)
        await backend.publish(self.core_subject("w", "a"), {}, b"a", mode=AMO)
        await backend.publish(self.core_subject("w", "a", "b"), {}, b"a.b", mode=AMO)
        await rest.wait_for(2)
        await one.wait_for(1)
        await self.advance(0.5)
        assert one.bodies == [b"a"]
        assert sorted(rest.bodies) == [b"a", b"a.b"]
        assert one.items[0].subject == self.core_subject("w", "a")

    @pytest.mark.aclbus_requires("wildcards", "persistent")
    async def test_wildcard_on_stream(self, backend: Backend) -> None:
        """A wildcard ``at_least_once`` subscription receives the stored subjects it matches."""
        await backend.publish(self.subject("ws", "a"), {}, b"a")
        await backend.publish(self.subject("ws", "b"), {}, b"b")
        await backend.publish(self.subject("other"), {}, b"other")
        got = Deliveries()
        await backend.subscribe(SubscriptionSpec(self.subject("ws", "*"), mode=ALO), got)
        await got.wait_for(2)
        await self.advance(0.5)
        assert sorted(got.bodies) == [b"a", b"b"]
