"""The FIPA cancel meta-protocol on a bus, for Request, Query and Contract Net."""

from __future__ import annotations

import asyncio

import pytest

from aclbus.acl import ACLMessage, Performative
from aclbus.bus import Bus
from aclbus.protocols import (
    FIPA_REQUEST,
    ContractNet,
    ConversationCancelled,
    Query,
    QueryResponder,
    Request,
    RequestResponder,
)
from aclbus.testing.cases.protocols.base import WAIT, ProtocolTestcase, listen
from aclbus.testing.cases.protocols.contract_net import Bidders
from aclbus.testing.collector import Collector, eventually

__all__ = ["CancelTestcase"]

P = Performative


class CancelTestcase(ProtocolTestcase):
    """The cancel meta-protocol, for every protocol: cancel → inform (done) | failure."""

    async def test_cancel_a_request(self, bus: Bus) -> None:
        """The responder's work is stopped and the cancel confirmed; result() says cancelled."""
        worker = bus.agent("worker")
        stopped: Collector[str] = Collector()

        async def long_job(msg: ACLMessage) -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                stopped.add(msg.correlation_id or "")
                raise

        responder = RequestResponder(worker, long_job, agree=True)
        await worker.start()
        req = Request(bus.agent("client"), "worker", "job", deadline=1.0, result_deadline=5.0)
        await req.start()
        await eventually(lambda: req.state == "agreed", timeout=WAIT, what="agree")
        assert await req.cancel() is True
        assert await stopped.wait_for(1, timeout=WAIT) == [req.id]
        with pytest.raises(ConversationCancelled):
            await req.result()
        assert req.ended
        assert not responder.sessions

    async def test_cancel_of_an_ended_request(self, bus: Bus) -> None:
        """Nothing to cancel: False, and no message sent."""
        RequestResponder(bus.agent("worker"), lambda msg: "ok")
        await bus.agent("worker").start()
        req = Request(bus.agent("client"), "worker", None, deadline=1.0)
        await req.run()
        assert await req.cancel() is False

    async def test_cancel_a_query_while_it_waits(self, bus: Bus) -> None:
        """A `result()` waiting when cancel comes raises `ConversationCancelled`."""

        async def slow(msg: ACLMessage) -> int:
            await asyncio.sleep(10)
            return 1

        QueryResponder(bus.agent("catalog"), slow, agree=True)
        await bus.agent("catalog").start()
        q = Query(bus.agent("client"), "catalog", "x", deadline=1.0, result_deadline=5.0)
        await q.start()
        waiting = asyncio.create_task(q.result())
        await eventually(lambda: q.state == "agreed", timeout=WAIT, what="agree")
        assert await q.cancel() is True
        with pytest.raises(ConversationCancelled):
            await asyncio.wait_for(waiting, WAIT)

    async def test_cancel_a_contract_net(self, bus: Bus) -> None:
        """Every engaged bidder gets a cancel, stops working and confirms."""
        bidders = Bidders(bus, {"b1": 1, "b2": 2}, delays={})
        bidders.work_time.update(b1=10, b2=10)
        await bidders.start(bus)
        net = ContractNet(bus.agent("manager"), ["b1", "b2"], "x", deadline=1.0, result_deadline=5)
        await net.start()
        running = asyncio.create_task(net.result())
        await eventually(
            lambda: all(m.state == "accepted" for m in net.machines.values()),
            timeout=WAIT,
            what="both accepted",
        )
        assert await net.cancel() == {"b1": True, "b2": True}
        assert sorted(await bidders.cancelled.wait_for(2, timeout=WAIT)) == ["b1", "b2"]
        with pytest.raises(ConversationCancelled):
            await asyncio.wait_for(running, WAIT)
        for participant in bidders.participants.values():
            assert not participant.sessions

    async def test_cancel_of_an_unknown_conversation_fails(self, bus: Bus) -> None:
        """A responder asked to cancel a conversation it does not have answers failure."""
        RequestResponder(bus.agent("worker"), lambda msg: None)
        await bus.agent("worker").start()
        got = listen(bus, "client")
        await bus.agent("client").start()
        await bus.send(
            ACLMessage(
                performative=P.CANCEL,
                sender_id="client",
                receiver_id="worker",
                correlation_id="no-such-thing",
                protocol=FIPA_REQUEST,
            )
        )
        [answer] = await got.wait_for(1, timeout=WAIT)
        assert answer.performative is P.FAILURE
        assert answer.payload == {"reason": "no-such-conversation"}
