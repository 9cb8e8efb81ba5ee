"""Competing consumers: subscriptions in one queue group split the messages."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import ClassVar

import pytest

from aclbus.backend import (
    Backend,
    Capabilities,
    DeliveryHandler,
    Received,
    SubscriptionSpec,
)
from aclbus.testing.cases.base import AMO, BackendTestcase, publish_numbered
from aclbus.testing.collector import Collector, Deliveries

__all__ = ["CompetingConsumersTestcase"]

_MEMBERS = 3
_MESSAGES = 60


def _member(index: int, handled: Collector[tuple[int, bytes]]) -> DeliveryHandler:
    """A group member's handler: records ``(member, body)``, acks after a loop turn."""

    async def handle(received: Received) -> None:
        handled.add((index, received.body))
        await asyncio.sleep(0)  # hold the delivery across a loop turn, as real work would
        await received.ack()

    return handle


class CompetingConsumersTestcase(BackendTestcase):
    """Every message is handled once by the group, and the work is spread over its members."""

    requires: ClassVar[Capabilities] = Capabilities(queue_groups=True)

    @pytest.mark.aclbus_requires("persistent", "durable", "ack")
    async def test_durable_queue_group_splits_work(self, backend: Backend) -> None:
        """On one durable: each message handled exactly once, by more than one member."""
        subject = self.subject("work")
        handled: Collector[tuple[int, bytes]] = Collector()
        for index in range(_MEMBERS):
            spec = SubscriptionSpec(subject, durable="workers", queue="workers", ack_wait=30.0)
            await backend.subscribe(spec, _member(index, handled))
        await publish_numbered(backend, subject, _MESSAGES)
        await handled.wait_for(_MESSAGES)
        await self.advance(1.0)
        self._assert_split(handled.items)

    async def test_at_most_once_queue_group_splits_work(self, backend: Backend) -> None:
        """A plain queue group: each message reaches one member, and not always the same."""
        subject = self.core_subject("work")
        handled: Collector[tuple[int, bytes]] = Collector()
        for index in range(_MEMBERS):
            spec = SubscriptionSpec(subject, mode=AMO, queue="workers")
            await backend.subscribe(spec, _member(index, handled))
        await publish_numbered(backend, subject, _MESSAGES, mode=AMO)
        await handled.wait_for(_MESSAGES)
        await self.advance(1.0)
        self._assert_split(handled.items)

    @pytest.mark.aclbus_requires("persistent", "durable", "ack")
    async def test_unacked_work_of_a_leaving_member_goes_to_another(self, backend: Backend) -> None:
        """A member that leaves holding an unacked message: another member gets it later."""
        subject = self.subject("handover")
        spec = SubscriptionSpec(subject, durable="workers", queue="workers", ack_wait=2.0)
        leaver = Deliveries(settle=None)
        leaving = await backend.subscribe(spec, leaver)
        await backend.publish(subject, {}, b"job")
        [first] = await leaver.wait_for(1)
        stayer = Deliveries(settle="ack")
        await backend.subscribe(spec, stayer)
        await leaving.unsubscribe()
        await self.advance(3.0)
        [again] = await stayer.wait_for(1)
        assert (again.body, again.sequence) == (b"job", first.sequence)
        assert again.attempt == 2

    @staticmethod
    def _assert_split(items: list[tuple[int, bytes]]) -> None:
        counts = Counter(body for _, body in items)
        expected = {str(i).encode() for i in range(_MESSAGES)}
        assert set(counts) == expected, "some messages were never handled"
        repeated = sorted(body for body, n in counts.items() if n > 1)
        assert not repeated, f"handled more than once: {repeated!r}"
        members = Counter(index for index, _ in items)
        assert len(members) > 1, f"one member did all the work: {dict(members)}"
