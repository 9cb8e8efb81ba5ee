"""FIPA Request on a bus: the result, agree, refuse, failure and both deadlines."""

from __future__ import annotations

import asyncio

import pytest

from aclbus.acl import ACLMessage, Performative
from aclbus.bus import Bus
from aclbus.protocols import (
    FIPA_REQUEST,
    NotUnderstood,
    ProtocolFailure,
    ProtocolTimeout,
    Refused,
    Request,
    RequestResponder,
    request,
)
from aclbus.testing.cases.protocols.base import WAIT, ProtocolTestcase, listen
from aclbus.testing.collector import eventually

__all__ = ["RequestProtocolTestcase"]

P = Performative


class RequestProtocolTestcase(ProtocolTestcase):
    """FIPA Request: request → refuse | (agree →) inform | failure, with deadlines."""

    async def test_inform_without_agree(self, bus: Bus) -> None:
        """The result comes back as an inform; the conversation is cleaned up after."""
        worker = bus.agent("worker")
        responder = RequestResponder(worker, lambda msg: {"sum": sum(msg.payload)})
        await worker.start()
        client = bus.agent("client")
        req = Request(client, "worker", [1, 2, 3], deadline=1.0)
        outcome = await req.run()
        assert outcome.payload == {"sum": 6}
        assert (outcome.peer, outcome.agreed) == ("worker", False)
        msg = outcome.message
        assert msg.performative is P.INFORM
        assert (msg.correlation_id, msg.protocol) == (req.id, FIPA_REQUEST)
        assert req.ended
        assert req.state == "done"
        assert client.route(client.message(P.INFORM, correlation_id=req.id)) is None
        await eventually(lambda: not responder.sessions, timeout=WAIT, what="responder cleanup")

    async def test_agree_then_inform(self, bus: Bus) -> None:
        """With ``agree=True`` the responder agrees before the result."""
        worker = bus.agent("worker")

        async def slow(msg: ACLMessage) -> str:
            await asyncio.sleep(0.05)
            return "done"

        RequestResponder(worker, slow, agree=True)
        await worker.start()
        outcome = await request(bus.agent("client"), "worker", "job", deadline=1.0)
        assert outcome.agreed
        assert outcome.payload == "done"

    async def test_refuse(self, bus: Bus) -> None:
        """``decide`` raising `Refused` is a refuse, with its reason, at the initiator."""
        worker = bus.agent("worker")
        performed: list[ACLMessage] = []

        def decide(msg: ACLMessage) -> None:
            raise Refused("busy")

        RequestResponder(worker, performed.append, decide=decide, agree=True)
        await worker.start()
        with pytest.raises(Refused) as caught:
            await request(bus.agent("client"), "worker", "job", deadline=1.0)
        assert caught.value.reason == "busy"
        assert caught.value.peer == "worker"
        assert caught.value.message is not None
        assert caught.value.message.performative is P.REFUSE
        assert performed == []

    async def test_failure_masks_secrets(self, bus: Bus) -> None:
        """An exception in ``perform`` is a failure; a credential in its text is masked."""
        worker = bus.agent("worker")

        def broken(msg: ACLMessage) -> None:
            raise RuntimeError("cannot reach db password=hunter2")

        RequestResponder(worker, broken)
        await worker.start()
        with pytest.raises(ProtocolFailure) as caught:
            await request(bus.agent("client"), "worker", "job", deadline=1.0)
        assert caught.value.reason == "error"
        assert caught.value.message is not None
        payload = caught.value.message.payload
        assert payload["error"] == "RuntimeError"
        assert "hunter2" not in str(payload)

    async def test_response_deadline(self, bus: Bus) -> None:
        """No answer by ``deadline``: `ProtocolTimeout` of step "response"; state cleaned up."""
        got = listen(bus, "mute")  # takes the request and never answers
        await bus.agent("mute").start()
        req = Request(bus.agent("client"), "mute", "job", deadline=0.3)
        with pytest.raises(ProtocolTimeout) as caught:
            await req.run()
        assert caught.value.step == "response"
        assert req.ended
        assert req.state == "timed-out"
        [sent] = got.items
        assert sent.reply_by is not None
        assert sent.reply_by > sent.timestamp

    async def test_result_deadline(self, bus: Bus) -> None:
        """Agreed but no result by ``result_deadline``: step "result"."""
        worker = bus.agent("worker")
        release = asyncio.Event()

        async def stuck(msg: ACLMessage) -> None:
            await release.wait()

        responder = RequestResponder(worker, stuck, agree=True)
        await worker.start()
        req = Request(bus.agent("client"), "worker", "job", deadline=1.0, result_deadline=0.3)
        with pytest.raises(ProtocolTimeout) as caught:
            await req.run()
        assert caught.value.step == "result"
        await responder.close()

    async def test_responder_timeout_is_a_failure(self, bus: Bus) -> None:
        """``perform`` running past the responder's ``timeout`` is answered failure "timeout"."""
        worker = bus.agent("worker")

        async def slow(msg: ACLMessage) -> None:
            await asyncio.sleep(5)

        RequestResponder(worker, slow, agree=True, timeout=0.2)
        await worker.start()
        with pytest.raises(ProtocolFailure) as caught:
            await request(bus.agent("client"), "worker", "job", deadline=1.0)
        assert caught.value.reason == "timeout"

    async def test_receiver_that_does_not_speak_it(self, bus: Bus) -> None:
        """An agent with no handler answers not-understood: `NotUnderstood`."""
        await bus.agent("stranger").start()
        with pytest.raises(NotUnderstood) as caught:
            await request(bus.agent("client"), "stranger", "job", deadline=1.0)
        assert caught.value.peer == "stranger"
