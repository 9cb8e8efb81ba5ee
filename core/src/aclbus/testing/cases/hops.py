"""Hop protection: replies and forwards count hops; a loop is stopped and dead-lettered."""

from __future__ import annotations

from typing import ClassVar

import pytest

from aclbus.acl import ACLMessage, Performative
from aclbus.backend import Capabilities
from aclbus.dlq import Reason
from aclbus.errors import HopLimitExceeded
from aclbus.testing.cases.base import BusTestcase
from aclbus.testing.collector import Collector, eventually

__all__ = ["HopProtectionTestcase"]


class HopProtectionTestcase(BusTestcase):
    """``ACLBUS_MAX_HOPS`` stops agents that answer each other forever."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, ack=True)

    async def test_two_agents_in_a_reply_loop_are_stopped(self) -> None:
        """Ping and pong reply to each other: the bus stops the loop at the limit.

        The dead letter names the reason and the causation chain.
        """
        async with self.make_bus(max_hops=5) as bus:
            seen: Collector[ACLMessage] = Collector()
            for name in ("ping", "pong"):

                @bus.agent(name).on(Performative.INFORM)
                async def echo(msg: ACLMessage) -> ACLMessage:
                    seen.add(msg)
                    return msg.reply(Performative.INFORM, msg.payload)

                await bus.agent(name).start()
            first = ACLMessage(
                performative=Performative.INFORM, sender_id="ping", receiver_id="pong", payload=0
            )
            await bus.send(first)

            async def dead() -> bool:
                return len(await bus.dead_letters.list()) == 1

            await eventually(dead, what="the loop's dead letter")
            await self.advance(0.5)
            assert [m.hops for m in seen.items] == [0, 1, 2, 3, 4, 5]
            last = seen.items[-1]
            assert last.caused_by[0] == first.message_id
            assert len(last.caused_by) == 5
            [letter] = await bus.dead_letters.list()
            assert letter.reason == Reason.HOP_LIMIT
            assert letter.error_type == "HopLimitExceeded"
            assert "6 hops, over the limit of 5" in (letter.error or "")

    async def test_a_received_message_over_the_limit_is_dead_lettered(self) -> None:
        """A sender with a higher limit (or none) cannot push a loop through this bus."""
        async with self.make_bus(max_hops=None) as loose, self.make_bus(max_hops=3) as strict:
            got: Collector[ACLMessage] = Collector()

            @strict.agent("guard").on()
            async def record(msg: ACLMessage) -> None:
                got.add(msg)

            await strict.agent("guard").start()
            far = ACLMessage(
                performative=Performative.INFORM, sender_id="x", receiver_id="guard", hops=9
            )
            near = far.model_copy(update={"hops": 3, "message_id": "near-one"})
            await loose.send(far)
            await loose.send(near)
            [msg] = await got.wait_for(1)
            assert msg.message_id == "near-one"

            async def dead() -> bool:
                return len(await strict.dead_letters.list(origin="guard")) == 1

            await eventually(dead, what="the dead letter")
            [letter] = await strict.dead_letters.list(origin="guard")
            assert letter.reason == Reason.HOP_LIMIT
            assert letter.message_id == far.message_id

    async def test_sending_over_the_limit_raises(self) -> None:
        """The sender gets `HopLimitExceeded` at once, naming the hops and the chain."""
        async with self.make_bus(max_hops=2) as bus:
            msg = ACLMessage(performative=Performative.INFORM, sender_id="a", receiver_id="b")
            for _ in range(3):
                msg = msg.forward("b", sender_id="a")
            assert msg.hops == 3
            with pytest.raises(HopLimitExceeded, match="3 hops, over the limit of 2") as exc:
                await bus.send(msg)
            assert exc.value.caused_by == msg.caused_by
            with pytest.raises(HopLimitExceeded):
                await bus.request(msg, timeout=1)

    async def test_a_request_whose_reply_is_over_the_limit_gets_failure(self) -> None:
        """The requester is told at once, not left to time out."""
        async with self.make_bus(max_hops=3) as bus:

            @bus.agent("svc").on(Performative.REQUEST)
            async def answer(msg: ACLMessage) -> ACLMessage:
                return msg.reply(Performative.INFORM, "too far")

            await bus.agent("svc").start()
            ask = ACLMessage(
                performative=Performative.REQUEST, sender_id="kit", receiver_id="svc", hops=3
            )
            reply = await bus.request(ask, timeout=5)
            assert reply.performative is Performative.FAILURE
            assert reply.payload["error"] == "HopLimitExceeded"
            assert reply.hops == 3
