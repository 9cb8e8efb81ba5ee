"""Typed payloads: a handler's pydantic model validates the payload before it runs."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field

from aclbus.acl import ACLMessage, Performative
from aclbus.backend import Capabilities
from aclbus.bus import Bus
from aclbus.dlq import Reason
from aclbus.testing.cases.base import BusTestcase
from aclbus.testing.collector import Collector, eventually

__all__ = ["TypedPayloadTestcase"]


class Task(BaseModel):
    """The payload model of the kit's typed handler."""

    title: str
    effort: int = Field(ge=1, le=10)


class TypedPayloadTestcase(BusTestcase):
    """``agent.on(..., payload=Model)``: valid payloads arrive as models, invalid ones do not."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, ack=True, request_reply=True)

    async def _typed_agent(self, bus: Bus) -> Collector[Task]:
        got: Collector[Task] = Collector()
        agent = bus.agent("planner")

        @agent.on(Performative.REQUEST, message_type="task.request", payload=Task)
        async def plan(msg: ACLMessage) -> ACLMessage:
            assert isinstance(msg.payload, Task)
            got.add(msg.payload)
            return msg.reply(Performative.INFORM, {"planned": msg.payload.title})

        await agent.start()
        return got

    def _request(self, payload: object) -> ACLMessage:
        return ACLMessage(
            performative=Performative.REQUEST,
            sender_id="kit",
            receiver_id="planner",
            message_type="task.request",
            payload=payload,
        )

    async def test_a_valid_payload_reaches_the_handler_as_its_model(self, bus: Bus) -> None:
        """The handler gets a `Task`; its reply carries the model's data back."""
        got = await self._typed_agent(bus)
        reply = await bus.request(self._request({"title": "ship it", "effort": 3}))
        assert reply.performative is Performative.INFORM
        assert reply.payload == {"planned": "ship it"}
        assert got.items == [Task(title="ship it", effort=3)]

    async def test_an_invalid_request_is_answered_not_understood(self, bus: Bus) -> None:
        """The requester learns which field is wrong; the handler never runs."""
        got = await self._typed_agent(bus)
        reply = await bus.request(self._request({"title": "x", "effort": 99}))
        assert reply.performative is Performative.NOT_UNDERSTOOD
        assert reply.payload["model"] == "Task"
        assert [e["loc"] for e in reply.payload["errors"]] == [["effort"]]
        assert "effort" in reply.payload["reason"]
        assert len(got) == 0

    async def test_an_invalid_message_is_dead_lettered_and_the_agent_goes_on(
        self, bus: Bus
    ) -> None:
        """A durable message with a bad payload is refused; the next one is handled.

        Its sender is answered not-understood; the dead letter has reason ``invalid-payload``.
        """
        got = await self._typed_agent(bus)
        answers: Collector[ACLMessage] = Collector()

        @bus.agent("kit").on(Performative.NOT_UNDERSTOOD)
        async def noted(msg: ACLMessage) -> None:
            answers.add(msg)

        await bus.agent("kit").start()
        await bus.send(self._request(["not", "an", "object"]))
        await bus.send(self._request({"title": "next", "effort": 1}))
        await got.wait_for(1)
        [answer] = await answers.wait_for(1)
        assert answer.payload["model"] == "Task"

        async def dead() -> bool:
            return len(await bus.dead_letters.list(origin="planner")) == 1

        await eventually(dead, what="the dead letter")
        [letter] = await bus.dead_letters.list(origin="planner")
        assert letter.reason == Reason.INVALID_PAYLOAD
        assert letter.error_type == "InvalidPayload"
        assert letter.message(bus).payload == ["not", "an", "object"]
        assert got.items == [Task(title="next", effort=1)]

    async def test_an_invalid_broadcast_is_dead_lettered_and_not_answered(self, bus: Bus) -> None:
        """A broadcast with a bad payload: each typed agent dead-letters it, none answers."""
        got = await self._typed_agent(bus)
        answers: Collector[ACLMessage] = Collector()

        @bus.agent("kit").on(Performative.NOT_UNDERSTOOD)
        async def noted(msg: ACLMessage) -> None:
            answers.add(msg)

        await bus.agent("kit").start()
        bad = self._request(["not", "an", "object"]).model_copy(update={"receiver_id": None})
        await bus.broadcast(bad)

        async def dead() -> bool:
            return len(await bus.dead_letters.list(origin="planner")) == 1

        await eventually(dead, what="the dead letter")
        await self.advance(0.5)
        assert answers.items == []
        assert len(got) == 0
