"""The FIPA protocols against strays, out-of-sequence acts, bad input and concurrency."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from aclbus.acl import ACLMessage, Performative
from aclbus.bus import Bus
from aclbus.errors import ConfigurationError, InvalidIdentifier
from aclbus.protocols import (
    FIPA_REQUEST,
    ContractNet,
    FipaSubscription,
    InvalidDeadline,
    ProtocolError,
    ProtocolTimeout,
    Query,
    Request,
    RequestResponder,
    request,
)
from aclbus.testing.cases.protocols.base import WAIT, ProtocolTestcase, listen
from aclbus.testing.collector import Collector, eventually

__all__ = ["ProtocolRobustnessTestcase"]

P = Performative


class ProtocolRobustnessTestcase(ProtocolTestcase):
    """Strays, out-of-sequence acts, bad input, and conversations running at once.

    Strays and out-of-sequence acts are answered not-understood and change nothing; bad
    input is a typed error; two conversations in flight are kept apart.
    """

    async def test_stray_message_in_a_conversation_is_not_understood(self, bus: Bus) -> None:
        """A message that replies to nothing of the conversation changes nothing."""
        release = asyncio.Event()

        async def job(msg: ACLMessage) -> str:
            await release.wait()
            return "real"

        RequestResponder(bus.agent("worker"), job, agree=True)
        await bus.agent("worker").start()
        intruder = listen(bus, "intruder")
        await bus.agent("intruder").start()
        req = Request(bus.agent("client"), "worker", None, deadline=1.0, result_deadline=3.0)
        await req.start()
        await eventually(lambda: req.state == "agreed", timeout=WAIT, what="agree")
        fake = ACLMessage(
            performative=P.INFORM,
            sender_id="intruder",
            receiver_id="client",
            correlation_id=req.id,
            in_reply_to="bogus",
            protocol=FIPA_REQUEST,
            payload="fake",
        )
        await bus.send(fake)
        [answer] = await intruder.wait_for(1, timeout=WAIT)
        assert answer.performative is P.NOT_UNDERSTOOD
        assert answer.in_reply_to == fake.message_id
        assert req.state == "agreed"
        release.set()
        outcome = await req.result()
        assert outcome.payload == "real"

    async def test_out_of_sequence_reply_is_not_understood(self, bus: Bus) -> None:
        """The right peer sending an act the protocol does not allow now is not understood."""
        got: Collector[ACLMessage] = Collector()
        odd = bus.agent("odd")

        @odd.on(P.REQUEST)
        async def answer(msg: ACLMessage) -> None:
            await bus.send(msg.reply(P.PROPOSE, "?"))  # not a Request act
            await bus.send(msg.reply(P.INFORM, "result"))

        @odd.on(P.NOT_UNDERSTOOD)
        async def record(msg: ACLMessage) -> None:
            got.add(msg)

        await odd.start()
        outcome = await request(bus.agent("client"), "odd", None, deadline=1.0)
        assert outcome.payload == "result"
        [complaint] = await got.wait_for(1, timeout=WAIT)
        assert complaint.payload["performative"] == "propose"

    async def test_responder_does_not_understand_strays(self, bus: Bus) -> None:
        """Acts outside any conversation are not understood; a not-understood is unanswered."""
        RequestResponder(bus.agent("worker"), lambda msg: None)
        await bus.agent("worker").start()
        got = listen(bus, "client")
        await bus.agent("client").start()

        def stray(act: Performative, **fields: Any) -> ACLMessage:
            return ACLMessage(
                performative=act,
                sender_id="client",
                receiver_id="worker",
                protocol=FIPA_REQUEST,
                **fields,
            )

        await bus.send(stray(P.AGREE, correlation_id="c1"))
        await bus.send(stray(P.REQUEST))  # no conversation id
        await bus.send(stray(P.NOT_UNDERSTOOD, correlation_id="c2"))
        answers = await got.wait_for(2, timeout=WAIT)
        assert [a.performative for a in answers] == [P.NOT_UNDERSTOOD] * 2
        await asyncio.sleep(0.3)
        assert len(got) == 2

    async def test_two_conversations_at_once(self, bus: Bus) -> None:
        """Two requests in flight on one agent each get their own result."""

        async def echo(msg: ACLMessage) -> Any:
            await asyncio.sleep(0.2 if msg.payload == "first" else 0.0)
            return msg.payload

        RequestResponder(bus.agent("worker"), echo, agree=True)
        await bus.agent("worker").start()
        client = bus.agent("client")
        first, second = await asyncio.gather(
            request(client, "worker", "first", deadline=1.0),
            request(client, "worker", "second", deadline=1.0),
        )
        assert (first.payload, second.payload) == ("first", "second")
        assert first.conversation_id != second.conversation_id

    async def test_bad_input(self, bus: Bus) -> None:
        """Invalid ids, deadlines and fields are typed errors naming what is wrong."""
        client = bus.agent("client")
        with pytest.raises(InvalidIdentifier, match="receiver"):
            Request(client, "no spaces", deadline=1.0)
        with pytest.raises(InvalidIdentifier, match="conversation"):
            Request(client, "worker", deadline=1.0, conversation_id="a.b")
        for bad in (0, -1, math.nan, math.inf, "1", True, None):
            with pytest.raises(InvalidDeadline, match="deadline"):
                Request(client, "worker", deadline=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidDeadline, match="result_deadline"):
            Query(client, "worker", deadline=1.0, result_deadline=-2)
        with pytest.raises(ConfigurationError, match="correlation_id"):
            Request(client, "worker", deadline=1.0, correlation_id="x")
        with pytest.raises(ConfigurationError, match="bidder"):
            ContractNet(client, [], deadline=1.0)
        with pytest.raises(InvalidIdentifier, match="bidder"):
            ContractNet(client, ["ok", "not ok"], deadline=1.0)
        with pytest.raises(InvalidDeadline, match="timeout"):
            RequestResponder(bus.agent("worker"), lambda m: None, timeout=0)
        with pytest.raises(InvalidDeadline, match="gap_timeout"):
            FipaSubscription(client, "pub", deadline=1.0, gap_timeout=math.inf)
        with pytest.raises(ProtocolError, match="start"):
            await Request(client, "worker", deadline=1.0).result()
        listen(bus, "mute")
        await bus.agent("mute").start()
        first = Request(client, "mute", deadline=1.0, conversation_id="same")
        await first.start()
        with pytest.raises(ProtocolError, match="already running"):
            await Request(client, "mute", deadline=1.0, conversation_id="same").start()
        with pytest.raises(ProtocolTimeout, match="cancel"):
            await first.cancel(deadline=0.3)  # the mute agent never confirms
        assert first.ended
