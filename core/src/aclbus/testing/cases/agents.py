"""Agents on a bus: point-to-point to an inbox, broadcast, request-reply."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from aclbus.acl import ACLMessage, Performative
from aclbus.backend import Capabilities
from aclbus.bus import Bus
from aclbus.errors import NoResponders, RequestTimeout
from aclbus.middleware import Delivery
from aclbus.testing.cases.base import BusTestcase
from aclbus.testing.collector import DEFAULT_TIMEOUT, Collector

__all__ = ["BroadcastTestcase", "BusRequestTestcase", "PointToPointTestcase"]


def _listen(bus: Bus, agent_id: str) -> Collector[ACLMessage]:
    """Give agent ``agent_id`` a handler for every act that records what it gets."""
    got: Collector[ACLMessage] = Collector()

    @bus.agent(agent_id).on()
    async def record(msg: ACLMessage) -> None:
        got.add(msg)

    return got


def _inform(receiver: str | None = None, **fields: object) -> ACLMessage:
    return ACLMessage(
        performative=Performative.INFORM, sender_id="kit", receiver_id=receiver, **fields
    )


class PointToPointTestcase(BusTestcase):
    """`Bus.send` puts a message in each receiver's durable inbox."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, ack=True)

    async def test_send_reaches_the_receiver_only(self, bus: Bus) -> None:
        """The receiver's handler gets the message as sent; another agent gets nothing."""
        worker, bystander = _listen(bus, "worker"), _listen(bus, "bystander")
        await bus.agent("worker").start()
        await bus.agent("bystander").start()
        sent = _inform("worker", payload={"x": 1}, message_type="task.created")
        acks = await bus.send(sent)
        assert len(acks) == 1
        [msg] = await worker.wait_for(1)
        assert msg.message_id == sent.message_id
        assert (msg.sender_id, msg.receiver_id) == ("kit", "worker")
        assert (msg.payload, msg.message_type) == ({"x": 1}, "task.created")
        assert msg.performative is Performative.INFORM
        await self.advance(0.5)
        assert len(bystander) == 0
        assert len(worker) == 1

    async def test_send_to_several_receivers(self, bus: Bus) -> None:
        """A message with ``receivers`` reaches each of them once."""
        collectors = {name: _listen(bus, name) for name in ("a", "b", "c")}
        for name in collectors:
            await bus.agent(name).start()
        sent = _inform("a", receivers=("b", "c"))
        acks = await bus.send(sent)
        assert len(acks) == 3
        for got in collectors.values():
            [msg] = await got.wait_for(1)
            assert msg.message_id == sent.message_id
        await self.advance(0.5)
        assert [len(got) for got in collectors.values()] == [1, 1, 1]

    async def test_handler_sees_the_delivery(self, bus: Bus) -> None:
        """A handler taking ``(msg, delivery)`` gets the delivery's attempt and sequence."""
        seen: Collector[Delivery] = Collector()

        @bus.agent("worker").on(Performative.INFORM)
        async def handle(msg: ACLMessage, delivery: Delivery) -> None:
            seen.add(delivery)

        await bus.agent("worker").start()
        sent = _inform("worker")
        [ack] = await bus.send(sent)
        [delivery] = await seen.wait_for(1)
        assert delivery.message.message_id == sent.message_id
        assert delivery.attempt == 1
        assert delivery.sequence == ack.sequence
        assert delivery.agent == "worker"

    @pytest.mark.aclbus_requires("durable")
    async def test_inbox_keeps_messages_while_the_agent_is_away(self, bus: Bus) -> None:
        """Sent before the agent started, and while it was stopped: all arrive on start."""
        got = _listen(bus, "worker")
        agent = bus.agent("worker")
        first = _inform("worker", payload=1)
        await bus.send(first)
        await agent.start()
        await got.wait_for(1)
        await self.advance(0.2)
        await agent.stop()
        second = _inform("worker", payload=2)
        await bus.send(second)
        await self.advance(0.5)
        assert len(got) == 1
        await agent.start()
        await got.wait_for(2)
        await self.advance(0.5)
        assert [m.message_id for m in got.items] == [first.message_id, second.message_id]

    @pytest.mark.aclbus_requires("queue_groups", "durable")
    async def test_instances_of_one_agent_share_its_inbox(self, bus: Bus) -> None:
        """Two instances of one agent (on sibling buses) split its inbox: each message once."""
        async with bus.sibling() as other:
            first, second = _listen(bus, "pool"), _listen(other, "pool")
            await bus.agent("pool").start()
            await other.agent("pool").start()
            sent = [_inform("pool", payload=i) for i in range(40)]
            for msg in sent:
                await bus.send(msg)
            handled = Collector[ACLMessage]()
            for _ in range(int(DEFAULT_TIMEOUT / 0.05)):
                if len(first) + len(second) >= len(sent):
                    break
                await asyncio.sleep(0.05)
            await self.advance(0.5)
            for msg in (*first.items, *second.items):
                handled.add(msg)
        ids = sorted(m.message_id for m in handled.items)
        assert ids == sorted(m.message_id for m in sent)  # every message, none twice
        assert len(first) > 0
        assert len(second) > 0

    @pytest.mark.aclbus_requires("durable")
    async def test_high_priority_overtakes_a_backlog(self, bus: Bus) -> None:
        """Urgent messages overtake a backlog of ordinary ones.

        1,000 ordinary messages then 10 urgent ones are queued before the agent starts; the
        urgent ones (in the priority lane) are handled within the first few dozen, in order.
        """
        got = _listen(bus, "worker")
        for i in range(1000):
            await bus.send(_inform("worker", payload=i, priority=0))
        for i in range(10):
            await bus.send(_inform("worker", payload=f"urgent-{i}", priority=9))
        await bus.agent("worker").start()
        handled = await got.wait_for(1010, timeout=60)
        order = [m.payload for m in handled]
        urgent = [i for i, p in enumerate(order) if isinstance(p, str)]
        assert len(urgent) == 10
        assert max(urgent) < 40, urgent
        assert [order[i] for i in urgent] == [f"urgent-{i}" for i in range(10)]  # in order

    async def test_agents_on_two_buses_talk(self) -> None:
        """A bus sends to an agent that lives on another bus connected to the same broker."""
        async with self.make_bus() as here, self.make_bus() as there:
            got = _listen(there, "remote")
            await there.agent("remote").start()
            sent = _inform("remote", payload="hello")
            await here.send(sent)
            [msg] = await got.wait_for(1)
            assert (msg.message_id, msg.payload) == (sent.message_id, "hello")


class BroadcastTestcase(BusTestcase):
    """`Bus.broadcast` reaches every started agent once."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, ack=True)

    async def test_broadcast_reaches_every_agent(self, bus: Bus) -> None:
        """Five agents, one broadcast: each handles it exactly once."""
        names = [f"agent-{i}" for i in range(5)]
        collectors = [_listen(bus, name) for name in names]
        for name in names:
            await bus.agent(name).start()
        sent = ACLMessage(performative=Performative.INFORM, sender_id="kit", payload="all")
        await bus.broadcast(sent)
        for got in collectors:
            [msg] = await got.wait_for(1)
            assert (msg.message_id, msg.payload) == (sent.message_id, "all")
        await self.advance(0.5)
        assert [len(got) for got in collectors] == [1] * len(names)

    async def test_broadcast_skips_stopped_agents(self, bus: Bus) -> None:
        """An agent that is stopped when the broadcast is sent does not handle it."""
        live, stopped = _listen(bus, "live"), _listen(bus, "stopped")
        await bus.agent("live").start()
        await bus.agent("stopped").start()
        await bus.agent("stopped").stop()
        await bus.broadcast(_inform())
        await live.wait_for(1)
        await self.advance(0.5)
        assert len(stopped) == 0


class BusRequestTestcase(BusTestcase):
    """`Bus.request`: the handler's return value is the reply."""

    requires: ClassVar[Capabilities] = Capabilities(request_reply=True)

    async def test_request_gets_the_handlers_reply(self, bus: Bus) -> None:
        """The reply comes from the handler, in reply to the request."""
        worker = bus.agent("worker")

        @worker.on(Performative.REQUEST)
        async def handle(msg: ACLMessage) -> ACLMessage:
            return msg.reply(Performative.INFORM, payload={"doubled": msg.payload["x"] * 2})

        await worker.start()
        request = ACLMessage(
            performative=Performative.REQUEST,
            sender_id="cli",
            receiver_id="worker",
            payload={"x": 21},
        )
        reply = await asyncio.wait_for(bus.request(request, timeout=2.0), DEFAULT_TIMEOUT)
        assert reply.performative is Performative.INFORM
        assert reply.payload == {"doubled": 42}
        assert (reply.sender_id, reply.receiver_id) == ("worker", "cli")
        assert reply.in_reply_to == request.message_id
        assert reply.correlation_id == request.message_id

    async def test_request_times_out(self, bus: Bus) -> None:
        """A handler that does not answer in time: `RequestTimeout` after the timeout."""
        worker = bus.agent("worker")
        release = asyncio.Event()

        @worker.on(Performative.REQUEST)
        async def handle(msg: ACLMessage) -> ACLMessage:
            await release.wait()
            return msg.reply(Performative.INFORM)

        await worker.start()
        request = ACLMessage(
            performative=Performative.REQUEST, sender_id="cli", receiver_id="worker"
        )
        pending = asyncio.ensure_future(bus.request(request, timeout=2.0))
        try:
            await self.advance(1.0)
            assert not pending.done(), "the request ended before its timeout"
            await self.advance(1.5)
            with pytest.raises(RequestTimeout):
                await asyncio.wait_for(pending, DEFAULT_TIMEOUT)
        finally:
            pending.cancel()
            release.set()
            await self.advance(0)

    async def test_request_without_responder_fails_fast(self, bus: Bus) -> None:
        """No agent serves the receiver: `NoResponders`, far within the timeout."""
        request = ACLMessage(
            performative=Performative.REQUEST, sender_id="cli", receiver_id="nobody"
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(NoResponders):
            await asyncio.wait_for(bus.request(request, timeout=60.0), DEFAULT_TIMEOUT)
        assert loop.time() - started < DEFAULT_TIMEOUT
