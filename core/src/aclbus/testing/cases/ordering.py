"""Order: messages of one subject arrive in publish order, with one handler at a time."""

from __future__ import annotations

from typing import ClassVar

import pytest

from aclbus.backend import Backend, Capabilities, SubscriptionSpec
from aclbus.testing.cases.base import AMO, BackendTestcase, publish_numbered
from aclbus.testing.collector import Deliveries

__all__ = ["OrderingTestcase"]

_COUNT = 100


class OrderingTestcase(BackendTestcase):
    """Per-subject order with ``concurrency=1``."""

    requires: ClassVar[Capabilities] = Capabilities(ordered=True)

    @pytest.mark.aclbus_requires("persistent")
    async def test_stored_messages_arrive_in_order(self, backend: Backend) -> None:
        """100 messages published to one subject are delivered in publish order."""
        subject = self.subject("order")
        got = Deliveries()
        await backend.subscribe(SubscriptionSpec(subject, concurrency=1), got)
        await publish_numbered(backend, subject, _COUNT)
        await got.wait_for(_COUNT)
        assert got.bodies == [str(i).encode() for i in range(_COUNT)]
        sequences = [r.sequence or 0 for r in got.items]
        assert sequences == sorted(sequences)

    @pytest.mark.aclbus_requires("persistent")
    async def test_backlog_arrives_in_order(self, backend: Backend) -> None:
        """100 messages stored before the subscriber came are delivered in publish order."""
        subject = self.subject("backlog")
        await publish_numbered(backend, subject, _COUNT)
        got = Deliveries()
        await backend.subscribe(SubscriptionSpec(subject, concurrency=1), got)
        await got.wait_for(_COUNT)
        assert got.bodies == [str(i).encode() for i in range(_COUNT)]

    async def test_at_most_once_messages_arrive_in_order(self, backend: Backend) -> None:
        """100 ``at_most_once`` messages to one subject arrive in publish order."""
        subject = self.core_subject("order")
        got = Deliveries()
        await backend.subscribe(SubscriptionSpec(subject, mode=AMO, concurrency=1), got)
        await publish_numbered(backend, subject, _COUNT, mode=AMO)
        await got.wait_for(_COUNT)
        assert got.bodies == [str(i).encode() for i in range(_COUNT)]

    @pytest.mark.aclbus_requires("persistent")
    async def test_order_is_kept_per_subject(self, backend: Backend) -> None:
        """Interleaved publishes to two subjects: each subject's messages stay in order."""
        a, b = self.subject("pa"), self.subject("pb")
        got_a, got_b = Deliveries(), Deliveries()
        await backend.subscribe(SubscriptionSpec(a, concurrency=1), got_a)
        await backend.subscribe(SubscriptionSpec(b, concurrency=1), got_b)
        for i in range(50):
            await backend.publish(a, {}, str(i).encode())
            await backend.publish(b, {}, str(i).encode())
        await got_a.wait_for(50)
        await got_b.wait_for(50)
        expected = [str(i).encode() for i in range(50)]
        assert got_a.bodies == expected
        assert got_b.bodies == expected
