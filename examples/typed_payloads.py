"""Typed payloads: a handler declares a pydantic model; bad payloads never reach it.

    python examples/typed_payloads.py        # the embedded nats-server, or ACLBUS_BACKEND=memory

The translator's handler takes a `TranslateTask`. A valid request is answered ``inform``; an
invalid one is answered ``not-understood`` with the validation errors, without the handler
running, and the translator keeps working. The same invalid payload sent to its inbox is also
dead-lettered with the reason ``invalid-payload``.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import BaseModel, Field

from aclbus import ACLMessage, Bus, Performative
from aclbus.dlq import Reason


class TranslateTask(BaseModel):
    """A text to translate."""

    text: str = Field(min_length=1, max_length=2000)
    to: Literal["en", "fr", "de"]


WORDS = {("Bonjour", "en"): "Hello", ("Hello", "fr"): "Bonjour", ("Hello", "de"): "Hallo"}

bus = Bus()
translator = bus.agent("translator")
client = bus.agent("client")
handled: list[TranslateTask] = []
client_inbox: asyncio.Queue[ACLMessage] = asyncio.Queue()


@translator.on(Performative.REQUEST, message_type="task.translate", payload=TranslateTask)
async def translate(msg: ACLMessage) -> ACLMessage:
    """Translate a text (word by word, from a very small dictionary)."""
    task: TranslateTask = msg.payload  # validated already: the model instance, not a dict
    assert isinstance(task, TranslateTask)
    handled.append(task)
    words = [WORDS.get((word, task.to), word) for word in task.text.split()]
    return msg.reply(Performative.INFORM, payload={"text": " ".join(words), "lang": task.to})


@client.on(Performative.NOT_UNDERSTOOD)
async def refused(msg: ACLMessage) -> None:
    """Keep the translator's refusals that come to the client's inbox."""
    await client_inbox.put(msg)


def task_request(payload: object) -> ACLMessage:
    return client.message(
        Performative.REQUEST,
        receiver_id="translator",
        message_type="task.translate",
        payload=payload,
    )


async def main() -> None:
    async with bus:
        # A pydantic model is a fine payload to send, too: it travels as its JSON dump.
        reply = await bus.request(task_request(TranslateTask(text="Bonjour", to="en")))
        print(f"valid request -> {reply.performative}: {reply.payload}")
        assert reply.performative is Performative.INFORM
        assert reply.payload == {"text": "Hello", "lang": "en"}

        reply = await bus.request(task_request({"text": "", "to": "xx"}))
        print(f"invalid request -> {reply.performative}: {reply.payload['reason']}")
        assert reply.performative is Performative.NOT_UNDERSTOOD
        assert reply.payload["model"] == "TranslateTask"
        fields = sorted(tuple(error["loc"]) for error in reply.payload["errors"])
        assert fields == [("text",), ("to",)], reply.payload["errors"]
        assert len(handled) == 1  # the handler never saw the bad payload

        # Sent to the inbox instead (at least once): refused the same way, and dead-lettered.
        await bus.send(task_request({"text": "Hello"}))
        answer = await asyncio.wait_for(client_inbox.get(), 10.0)
        print(f"invalid message in the inbox -> {answer.performative} in the client's inbox")
        assert answer.performative is Performative.NOT_UNDERSTOOD
        assert [tuple(e["loc"]) for e in answer.payload["errors"]] == [("to",)]
        [dead] = await bus.dead_letters.list(origin="translator")
        print(f"dead letter {dead.sequence}: reason {dead.reason!r}, {dead.error_type}")
        assert dead.reason == Reason.INVALID_PAYLOAD
        assert dead.error_type == "InvalidPayload"

        # The translator kept running.
        reply = await bus.request(task_request({"text": "Hello", "to": "de"}))
        print(f"and after that -> {reply.performative}: {reply.payload}")
        assert reply.payload == {"text": "Hallo", "lang": "de"}
        assert [t.to for t in handled] == ["en", "de"]


if __name__ == "__main__":
    asyncio.run(main())
