"""Refusals: what an agent does with a message it cannot read (docs/wire-format.md, 12).

It is dead-lettered, answered where FIPA says so, and never stops the agent. The messages are
written by hand (headers and body straight to the backend), as a client in another language,
or a hostile one, would write them.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from aclbus.acl import ACLMessage, Performative
from aclbus.backend import Capabilities, DeliveryMode
from aclbus.bus import Bus
from aclbus.dlq import DeadLetter
from aclbus.testing.cases.base import BusTestcase
from aclbus.testing.collector import Collector, eventually
from aclbus.wire import decode

__all__ = ["RefusalTestcase"]

_ALO = DeliveryMode.AT_LEAST_ONCE


def _headers(**extra: str) -> dict[str, str]:
    """A valid envelope from ``kit`` to ``svc`` (a fresh ``ce-id``), with ``extra`` over it."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": str(uuid.uuid4()),
        "ce-source": "kit",
        "ce-type": "fipa.acl.inform",
        "acl-receiver-id": "svc",
    }
    headers.update(extra)
    return headers


class RefusalTestcase(BusTestcase):
    """What an agent does with input it cannot decode, and whom it tells."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, ack=True, request_reply=True)

    async def _agents(self, bus: Bus) -> tuple[Collector[ACLMessage], Collector[ACLMessage]]:
        """``svc`` records what its handler gets; ``kit`` and ``mallory`` record any answer."""
        handled: Collector[ACLMessage] = Collector()
        answers: Collector[ACLMessage] = Collector()

        @bus.agent("svc").on()
        async def serve(msg: ACLMessage) -> None:
            handled.add(msg)

        for name in ("kit", "mallory"):

            @bus.agent(name).on()
            async def note(msg: ACLMessage) -> None:
                answers.add(msg)

            await bus.agent(name).start()
        await bus.agent("svc").start()
        return handled, answers

    async def _letters(self, bus: Bus, count: int, origin: str | None = "svc") -> list[DeadLetter]:
        async def enough() -> bool:
            return len(await bus.dead_letters.list(origin=origin)) >= count

        await eventually(enough, what=f"{count} dead letter(s) for {origin or 'anyone'}")
        return await bus.dead_letters.list(origin=origin)

    async def _still_serving(self, bus: Bus, handled: Collector[ACLMessage]) -> None:
        """A good message after the bad ones is handled: the agent goes on."""
        before = len(handled)
        await bus.send(
            ACLMessage(performative=Performative.INFORM, sender_id="kit", receiver_id="svc")
        )
        await handled.wait_for(before + 1)
        await self.advance(0.3)  # answers sent before it have arrived by now

    async def test_an_undecodable_inbox_message_is_answered_not_understood(self, bus: Bus) -> None:
        """A body that is not JSON: dead-lettered, and the sender is told why, in its inbox.

        The answer quotes the message's id and keeps its conversation, so the sender can tell
        which of its messages it is about.
        """
        handled, answers = await self._agents(bus)
        headers = _headers(**{"acl-reply-with": "kit-q1", "acl-correlation-id": "conv-7"})
        await bus.backend.publish(bus.subjects.inbox("svc"), headers, b"{", mode=_ALO)
        [letter] = await self._letters(bus, 1)
        assert letter.reason == "malformed"
        [answer] = await answers.wait_for(1)
        assert answer.performative is Performative.NOT_UNDERSTOOD
        assert (answer.sender_id, answer.receiver_id) == ("svc", "kit")
        assert answer.in_reply_to == "kit-q1"
        assert answer.correlation_id == "conv-7"
        assert answer.payload["message_id"] == headers["ce-id"]
        assert answer.payload["field"] == "body"
        assert "malformed JSON" in answer.payload["reason"]
        await self._still_serving(bus, handled)
        assert len(handled) == 1
        assert len(answers) == 1

    async def test_an_invalid_envelope_is_answered_to_its_reply_to(self, bus: Bus) -> None:
        """A bad envelope header is named; the answer goes where FIPA says replies go."""
        handled, answers = await self._agents(bus)
        headers = _headers(**{"acl-priority": "high", "acl-reply-to": "mallory"})
        await bus.backend.publish(bus.subjects.inbox("svc"), headers, b"{}", mode=_ALO)
        [answer] = await answers.wait_for(1)
        assert answer.receiver_id == "mallory"
        assert answer.payload["field"] == "acl-priority"
        assert answer.in_reply_to == answer.correlation_id == headers["ce-id"]
        [letter] = await self._letters(bus, 1)
        assert letter.reason == "malformed"
        await self._still_serving(bus, handled)

    async def test_a_request_that_cannot_be_decoded_is_answered_on_its_reply_subject(
        self, bus: Bus
    ) -> None:
        """The requester waits on its reply subject: the not-understood goes there."""
        handled, answers = await self._agents(bus)
        headers = _headers(**{"ce-type": "fipa.acl.request"})
        reply = await bus.backend.request(bus.subjects.rpc("svc"), headers, b"[1,", timeout=5)
        answer = decode(reply.headers, reply.body, bus.codecs)
        assert answer.performative is Performative.NOT_UNDERSTOOD
        assert (answer.sender_id, answer.receiver_id) == ("svc", "kit")
        assert answer.payload["field"] == "body"
        assert answer.in_reply_to == headers["ce-id"]
        await self._still_serving(bus, handled)
        assert len(answers) == 0  # not also in the inbox

    async def test_a_not_understood_is_never_answered(self, bus: Bus) -> None:
        """Two agents that cannot read each other must not answer each other forever."""
        handled, answers = await self._agents(bus)
        inbox = bus.subjects.inbox("svc")
        not_understood = "fipa.acl.not-understood"
        await bus.backend.publish(inbox, _headers(**{"ce-type": not_understood}), b"{", mode=_ALO)
        # ... nor when its headers are wrong too: the type is enough
        await bus.backend.publish(
            inbox,
            _headers(**{"ce-type": f" {not_understood}", "acl-priority": "x", "ce-id": "bad id"}),
            b"{}",
            mode=_ALO,
        )
        await self._letters(bus, 2)
        await self._still_serving(bus, handled)
        assert len(answers) == 0

    async def test_refused_broadcasts_are_not_answered(self, bus: Bus) -> None:
        """One bad broadcast must not make every agent answer its sender."""
        handled, answers = await self._agents(bus)
        for extra, body in (({}, b"{"), ({"acl-version": "2.0"}, b"{}")):
            await bus.backend.publish(
                bus.subjects.broadcast, _headers(**extra), body, mode=bus.settings.broadcast_mode
            )
        if bus.settings.broadcast_mode is _ALO:  # stored once, by the first agent to refuse it
            await self._letters(bus, 2, origin=None)
        await self._still_serving(bus, handled)
        assert len(answers) == 0

    async def test_an_envelope_header_given_twice_is_refused_as_malformed_headers(
        self, bus: Bus
    ) -> None:
        """Two ``ce-source`` (any case): which agent sent it cannot be known, so it is refused.

        Nobody is answered (the sender cannot be told apart from whom it claims to be), even
        when both give the same value; the agent goes on.
        """
        handled, answers = await self._agents(bus)
        inbox = bus.subjects.inbox("svc")
        spoofed = _headers(**{"CE-Source": "mallory"})
        twice = _headers(**{"ACL-RECEIVER-ID": "svc"})
        for headers in (spoofed, twice):
            await bus.backend.publish(inbox, headers, b"{}", mode=_ALO)
        letters = await self._letters(bus, 2)
        assert {letter.reason for letter in letters} == {"malformed-headers"}
        by_id = {letter.message_id: letter for letter in letters}
        assert "ce-source" in (by_id[spoofed["ce-id"]].error or "").lower()
        assert "acl-receiver-id" in (by_id[twice["ce-id"]].error or "").lower()
        await self._still_serving(bus, handled)
        assert len(handled) == 1
        assert len(answers) == 0

    async def test_a_spoofed_request_is_answered_only_on_its_reply_subject(self, bus: Bus) -> None:
        """The requester learns its request was refused; neither claimed sender hears of it."""
        handled, answers = await self._agents(bus)
        headers = _headers(**{"ce-type": "fipa.acl.request", "Ce-Source": "mallory"})
        reply = await bus.backend.request(bus.subjects.rpc("svc"), headers, b"{}", timeout=5)
        answer = decode(reply.headers, reply.body, bus.codecs)
        assert answer.performative is Performative.NOT_UNDERSTOOD
        assert answer.payload["field"] == "ce-source"
        assert answer.receiver_id is None  # who sent it is exactly what is not known
        await self._still_serving(bus, handled)
        assert len(handled) == 1
        assert len(answers) == 0
