"""FIPA Subscribe on a bus: ordered informs, refusals, deadlines, repeats and gaps."""

from __future__ import annotations

import asyncio

import pytest

from aclbus.acl import ACLMessage, Performative
from aclbus.bus import Bus
from aclbus.protocols import (
    SEQUENCE_HEADER,
    FipaSubscription,
    ProtocolFailure,
    ProtocolTimeout,
    Refused,
    SequenceGap,
    SubscribePublisher,
    subscribe,
)
from aclbus.testing.cases.protocols.base import WAIT, ProtocolTestcase, listen
from aclbus.testing.collector import Collector

__all__ = ["SubscribeProtocolTestcase"]

P = Performative


class SubscribeProtocolTestcase(ProtocolTestcase):
    """FIPA Subscribe: subscribe → refuse | agree, then ordered informs until cancel."""

    async def test_informs_in_order_then_cancel(self, bus: Bus) -> None:
        """Every notify reaches the subscriber in order, numbered; cancel is confirmed."""
        publisher = SubscribePublisher(bus.agent("prices"))
        await bus.agent("prices").start()
        sub = await subscribe(bus.agent("client"), "prices", {"sku": "A1"}, deadline=1.0)
        assert sub.active
        assert len(publisher.subscribers) == 1
        for i in range(5):
            assert await publisher.notify({"price": i}) == 1
        got = [await asyncio.wait_for(sub.next(), WAIT) for _ in range(5)]
        assert [m.payload for m in got] == [{"price": i} for i in range(5)]
        assert [m.headers[SEQUENCE_HEADER] for m in got] == ["1", "2", "3", "4", "5"]
        assert await sub.cancel() is True
        assert sub.ended
        assert not publisher.subscribers
        assert [m async for m in sub] == []

    async def test_two_subscribers(self, bus: Bus) -> None:
        """Each subscription is numbered on its own; one cancelling leaves the other."""
        publisher = SubscribePublisher(bus.agent("prices"))
        await bus.agent("prices").start()
        first = await subscribe(bus.agent("a"), "prices", deadline=1.0)
        second = await subscribe(bus.agent("b"), "prices", deadline=1.0)
        await publisher.notify(1)
        assert (await asyncio.wait_for(first.next(), WAIT)).payload == 1
        assert await first.cancel()
        await publisher.notify(2)
        assert [(await asyncio.wait_for(second.next(), WAIT)).payload for _ in range(2)] == [1, 2]
        assert len(publisher.subscribers) == 1

    async def test_refused(self, bus: Bus) -> None:
        """``on_subscribe`` raising `Refused` refuses the subscription."""

        def only_vip(msg: ACLMessage) -> None:
            if msg.sender_id != "vip":
                raise Refused("members only")

        publisher = SubscribePublisher(bus.agent("prices"), on_subscribe=only_vip)
        await bus.agent("prices").start()
        with pytest.raises(Refused, match="members only"):
            await subscribe(bus.agent("client"), "prices", deadline=1.0)
        vip = await subscribe(bus.agent("vip"), "prices", deadline=1.0)
        assert [m.sender_id for m in publisher.subscribers] == ["vip"]
        await vip.cancel()

    async def test_agree_deadline(self, bus: Bus) -> None:
        """No agree by the deadline: step "agree"."""
        listen(bus, "mute")
        await bus.agent("mute").start()
        sub = FipaSubscription(bus.agent("client"), "mute", deadline=0.3)
        with pytest.raises(ProtocolTimeout) as caught:
            await sub.start()
        assert caught.value.step == "agree"
        assert sub.ended

    async def test_publisher_ends_with_failure(self, bus: Bus) -> None:
        """`close` sends failure after the informs: they come first, then `ProtocolFailure`."""
        publisher = SubscribePublisher(bus.agent("prices"))
        await bus.agent("prices").start()
        sub = await subscribe(bus.agent("client"), "prices", deadline=1.0)
        await publisher.notify("last")
        await publisher.close("shutting down")
        assert (await asyncio.wait_for(sub.next(), WAIT)).payload == "last"
        with pytest.raises(ProtocolFailure, match="shutting down"):
            await asyncio.wait_for(sub.next(), WAIT)

    async def test_out_of_order_repeats_and_gaps(self, bus: Bus) -> None:
        """Informs are handed over by number: early ones wait, repeats drop, gaps are skipped."""
        opened: Collector[ACLMessage] = Collector()

        @bus.agent("manual").on(P.SUBSCRIBE)
        async def agree(msg: ACLMessage) -> ACLMessage:
            opened.add(msg)
            return msg.reply(P.AGREE)

        await bus.agent("manual").start()
        sub = await subscribe(bus.agent("client"), "manual", deadline=1.0, gap_timeout=0.3)
        [opening] = opened.items

        async def inform(seq: int) -> None:
            await bus.send(opening.reply(P.INFORM, seq, headers={SEQUENCE_HEADER: str(seq)}))

        for seq in (2, 1, 1, 3, 5):
            await inform(seq)
        got = [(await asyncio.wait_for(sub.next(), WAIT)).payload for _ in range(3)]
        assert got == [1, 2, 3]
        with pytest.raises(SequenceGap) as gap:
            await asyncio.wait_for(sub.next(), WAIT)
        assert gap.value.missing == (4, 4)
        assert (await asyncio.wait_for(sub.next(), WAIT)).payload == 5
        with pytest.raises(ProtocolTimeout):
            await sub.next(timeout=0.2)
