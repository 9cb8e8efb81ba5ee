"""Acknowledgement and redelivery of ``at_least_once`` deliveries.

One testcase per capability, so that a backend lacking, say, ``nack_delay`` still runs the
acknowledgement tests and skips only the delay ones.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from aclbus.backend import Backend, Capabilities, Received, SubscriptionSpec
from aclbus.testing.cases.base import BackendTestcase
from aclbus.testing.collector import Collector, Deliveries, eventually

__all__ = [
    "AckTestcase",
    "BackoffTestcase",
    "InProgressTestcase",
    "MaxDeliverTestcase",
    "NackDelayTestcase",
    "TermTestcase",
]


class AckTestcase(BackendTestcase):
    """``ack`` ends a message; ``nack`` or no ack within ``ack_wait`` delivers it again."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, ack=True)

    async def test_acked_message_is_not_redelivered(self, backend: Backend) -> None:
        """An acknowledged message is not delivered again, even after ``ack_wait``."""
        subject = self.subject("acked")
        got = Deliveries(settle="ack")
        await backend.subscribe(SubscriptionSpec(subject, ack_wait=1.0), got)
        await backend.publish(subject, {}, b"x")
        [first] = await got.wait_for(1)
        await self.advance(3.0)
        assert got.bodies == [b"x"]
        assert first.settled == "ack"

    async def test_unacked_message_is_redelivered_after_ack_wait(self, backend: Backend) -> None:
        """Not settled within ``ack_wait``: delivered again, not before, with attempt 2."""
        subject = self.subject("noack")
        got = Deliveries(settle=None)
        await backend.subscribe(SubscriptionSpec(subject, ack_wait=2.0), got)
        await backend.publish(subject, {}, b"x")
        [first] = await got.wait_for(1)
        await self.advance(1.0)
        assert len(got) == 1, "redelivered before ack_wait ran out"
        await self.advance(1.6)
        second = (await got.wait_for(2))[1]
        assert second.attempt == 2
        assert second.body == first.body
        assert second.sequence == first.sequence
        await second.ack()
        await self.advance(3.0)
        assert len(got) == 2

    async def test_nack_redelivers_with_attempt_two(self, backend: Backend) -> None:
        """``nack()`` delivers the message again at once, as attempt 2 of the same sequence."""
        subject = self.subject("nack")
        got = Deliveries(settle=None)
        await backend.subscribe(SubscriptionSpec(subject, ack_wait=30.0), got)
        await backend.publish(subject, {"x-k": "v"}, b"x")
        [first] = await got.wait_for(1)
        assert first.attempt == 1
        await first.nack()
        second = (await got.wait_for(2))[1]
        assert (second.attempt, second.sequence, second.body) == (2, first.sequence, b"x")
        assert second.headers["x-k"] == "v"
        await second.ack()

    async def test_attempt_counts_every_delivery(self, backend: Backend) -> None:
        """``attempt`` counts deliveries from 1: nacked three times, acked on the fourth."""
        subject = self.subject("count")
        got: Collector[Received] = Collector()

        async def handler(received: Received) -> None:
            got.add(received)
            await asyncio.sleep(0)  # as a real handler would (see `Deliveries`)
            if received.attempt < 4:
                await received.nack()
            else:
                await received.ack()

        await backend.subscribe(SubscriptionSpec(subject, ack_wait=30.0), handler)
        await backend.publish(subject, {}, b"x")
        await got.wait_for(4)
        await self.advance(1.0)
        assert [r.attempt for r in got.items] == [1, 2, 3, 4]
        assert len({r.sequence for r in got.items}) == 1

    async def test_settlement_happens_once(self, backend: Backend) -> None:
        """After ``ack``, a ``nack`` is ignored: the message is not delivered again."""
        subject = self.subject("once")
        got = Deliveries(settle="ack")
        await backend.subscribe(SubscriptionSpec(subject, ack_wait=1.0), got)
        await backend.publish(subject, {}, b"x")
        [first] = await got.wait_for(1)
        await eventually(lambda: first.settled == "ack", what="the handler's ack")
        await first.nack()
        await self.advance(2.0)
        assert len(got) == 1
        assert first.settled == "ack"

    async def test_messages_are_redelivered_independently(self, backend: Backend) -> None:
        """Nacking one message does not redeliver the acknowledged ones beside it."""
        subject = self.subject("indep")
        got: Collector[Received] = Collector()

        async def handler(received: Received) -> None:
            got.add(received)
            await asyncio.sleep(0)  # as a real handler would (see `Deliveries`)
            if received.body == b"1" and received.attempt == 1:
                await received.nack()
            else:
                await received.ack()

        await backend.subscribe(SubscriptionSpec(subject, ack_wait=30.0), handler)
        for body in (b"0", b"1", b"2"):
            await backend.publish(subject, {}, body)
        await got.wait_for(4)
        await self.advance(1.0)
        assert sorted((r.body, r.attempt) for r in got.items) == [
            (b"0", 1),
            (b"1", 1),
            (b"1", 2),
            (b"2", 1),
        ]


class NackDelayTestcase(BackendTestcase):
    """``nack(delay)`` holds the redelivery back for the delay."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, ack=True, nack_delay=True)

    async def test_nack_delay_is_respected(self, backend: Backend) -> None:
        """Not redelivered before the delay; redelivered after it, as attempt 2."""
        subject = self.subject("delay")
        got = Deliveries(settle=None)
        await backend.subscribe(SubscriptionSpec(subject, ack_wait=30.0), got)
        await backend.publish(subject, {}, b"x")
        [first] = await got.wait_for(1)
        await first.nack(delay=2.0)
        await self.advance(1.2)
        assert len(got) == 1, "redelivered before the nack delay"
        await self.advance(1.4)
        second = (await got.wait_for(2))[1]
        assert (second.attempt, second.body) == (2, b"x")
        await second.ack()

    async def test_delayed_message_does_not_block_the_next(self, backend: Backend) -> None:
        """While one message waits out its delay, the messages after it are delivered."""
        subject = self.subject("noblock")
        got = Deliveries(settle=None)
        await backend.subscribe(SubscriptionSpec(subject, ack_wait=30.0), got)
        await backend.publish(subject, {}, b"first")
        [first] = await got.wait_for(1)
        await first.nack(delay=10.0)
        await backend.publish(subject, {}, b"second")
        second = (await got.wait_for(2))[1]
        assert second.body == b"second"
        await second.ack()
        await self.advance(10.5)
        third = (await got.wait_for(3))[2]
        assert (third.body, third.attempt) == (b"first", 2)
        await third.ack()


class InProgressTestcase(BackendTestcase):
    """``in_progress()`` restarts the ack timer of a delivery still being worked on."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, ack=True, in_progress=True)

    async def test_in_progress_prevents_redelivery(self, backend: Backend) -> None:
        """A delivery kept alive past ``ack_wait`` is not redelivered until the new deadline."""
        subject = self.subject("wip")
        got = Deliveries(settle=None)
        await backend.subscribe(SubscriptionSpec(subject, ack_wait=2.0), got)
        await backend.publish(subject, {}, b"x")
        [first] = await got.wait_for(1)
        await self.advance(1.2)
        await first.in_progress()  # the deadline moves from 2.0 to 3.2
        await self.advance(1.2)  # 2.4: past the first deadline
        assert len(got) == 1, "redelivered although in_progress() restarted the ack timer"
        await self.advance(1.5)  # 3.9: past the new deadline
        second = (await got.wait_for(2))[1]
        assert second.attempt == 2
        await second.ack()

    async def test_in_progress_then_ack(self, backend: Backend) -> None:
        """A delivery kept alive, then acknowledged, is never redelivered."""
        subject = self.subject("wipack")
        got = Deliveries(settle=None)
        await backend.subscribe(SubscriptionSpec(subject, ack_wait=2.0), got)
        await backend.publish(subject, {}, b"x")
        [first] = await got.wait_for(1)
        for _ in range(3):
            await self.advance(1.2)
            await first.in_progress()
        await first.ack()
        await self.advance(3.0)
        assert len(got) == 1


class TermTestcase(BackendTestcase):
    """``term()`` gives a message up: never delivered again."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, ack=True, term=True)

    async def test_term_stops_redelivery(self, backend: Backend) -> None:
        """A terminated message is not redelivered, neither at once nor after ``ack_wait``."""
        subject = self.subject("term")
        got = Deliveries(settle="term")
        await backend.subscribe(SubscriptionSpec(subject, ack_wait=1.0), got)
        await backend.publish(subject, {}, b"x")
        [first] = await got.wait_for(1)
        await self.advance(3.0)
        assert got.bodies == [b"x"]
        assert first.settled == "term"

    async def test_term_does_not_stop_the_consumer(self, backend: Backend) -> None:
        """After a message is terminated, the next one is delivered."""
        subject = self.subject("termnext")
        got = Deliveries(settle="term")
        await backend.subscribe(SubscriptionSpec(subject, ack_wait=1.0), got)
        await backend.publish(subject, {}, b"a")
        await got.wait_for(1)
        await backend.publish(subject, {}, b"b")
        await got.wait_for(2)
        await self.advance(2.0)
        assert got.bodies == [b"a", b"b"]
        assert got.attempts == [1, 1]


class MaxDeliverTestcase(BackendTestcase):
    """After ``max_deliver`` attempts a message is not delivered again."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, ack=True, max_deliver=True)

    async def test_max_deliver_stops_nacked_message(self, backend: Backend) -> None:
        """Nacked every time with ``max_deliver=3``: exactly three deliveries."""
        subject = self.subject("maxnack")
        got = Deliveries(settle="nack")
        await backend.subscribe(SubscriptionSpec(subject, ack_wait=1.0, max_deliver=3), got)
        await backend.publish(subject, {}, b"x")
        await got.wait_for(3)
        await self.advance(3.0)
        assert got.attempts == [1, 2, 3]

    async def test_max_deliver_stops_unacked_message(self, backend: Backend) -> None:
        """Never settled with ``max_deliver=2``: delivered twice, then given up."""
        subject = self.subject("maxwait")
        got = Deliveries(settle=None)
        await backend.subscribe(SubscriptionSpec(subject, ack_wait=1.0, max_deliver=2), got)
        await backend.publish(subject, {}, b"x")
        await got.wait_for(1)
        await self.advance(1.5)
        await got.wait_for(2)
        await self.advance(1.5)
        await self.advance(1.5)
        assert got.attempts == [1, 2]

    async def test_consumer_goes_on_after_giving_up(self, backend: Backend) -> None:
        """A message given up does not block the messages after it."""
        subject = self.subject("maxnext")
        got: Collector[Received] = Collector()

        async def handler(received: Received) -> None:
            got.add(received)
            await asyncio.sleep(0)  # as a real handler would (see `Deliveries`)
            if received.body == b"poison":
                await received.nack()
            else:
                await received.ack()

        await backend.subscribe(SubscriptionSpec(subject, ack_wait=1.0, max_deliver=2), handler)
        await backend.publish(subject, {}, b"poison")
        await backend.publish(subject, {}, b"good")
        await got.wait_for(3)
        await self.advance(2.0)
        assert sorted((r.body, r.attempt) for r in got.items) == [
            (b"good", 1),
            (b"poison", 1),
            (b"poison", 2),
        ]


class BackoffTestcase(BackendTestcase):
    """Redeliveries after an ack timeout follow the subscription's ``backoff`` schedule.

    As in JetStream, ``backoff[n]`` replaces ``ack_wait`` as the ack timeout of delivery
    ``n + 1``; the last value repeats.
    """

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, ack=True, backoff=True)

    async def test_backoff_schedule(self, backend: Backend) -> None:
        """With ``backoff=(1, 3)``: redelivered after 1 s, then every 3 s."""
        subject = self.subject("backoff")
        got = Deliveries(settle=None)
        spec = SubscriptionSpec(subject, ack_wait=30.0, backoff=(1.0, 3.0), max_deliver=4)
        await backend.subscribe(spec, got)
        await backend.publish(subject, {}, b"x")
        await got.wait_for(1)
        # Each step leaves a margin whether the clock fires a timer at its due time or at the
        # end of the step that passed it.
        await self.advance(1.5)  # 1.5: the first timeout (1 s) has passed
        await got.wait_for(2)  # delivered at 1.0 (or 1.5)
        await self.advance(2.0)  # 3.5: the second timeout (3 s) is due at 4.0 (or 4.5)
        assert len(got) == 2, "redelivered before the second backoff step"
        await self.advance(1.5)  # 5.0
        await got.wait_for(3)  # delivered at 4.0 (or 5.0)
        await self.advance(1.5)  # 6.5: the last step repeats: due at 7.0 (or 8.0)
        assert len(got) == 3, "redelivered before the repeated last backoff step"
        await self.advance(2.0)  # 8.5
        await got.wait_for(4)
        assert got.attempts == [1, 2, 3, 4]
