"""Choosing a body codec per message (``content_type=``) or per agent (`Agent.content_type`)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from aclbus import ACLMessage, Bus, ConfigurationError, Delivery, Performative, Settings, hookimpl
from aclbus.codec import JSON, EncodeError
from aclbus.errors import ACLDecodeError
from aclbus.testing import Collector

TAGGED = "application/vnd.aclbus-test+json"


class TaggedJson:
    """JSON with a marker byte in front, counting its calls: a codec no one mistakes for JSON."""

    content_type = TAGGED

    def __init__(self) -> None:
        self.encoded = 0
        self.decoded = 0

    def encode(self, payload: Any) -> bytes:
        self.encoded += 1
        return b"T" + orjson.dumps(payload)

    def decode(self, body: bytes) -> Any:
        self.decoded += 1
        if not body.startswith(b"T"):
            raise ACLDecodeError("body", "not tagged")
        return orjson.loads(body[1:])


class TaggedPlugin:
    def __init__(self) -> None:
        self.codec = TaggedJson()

    @hookimpl
    def aclbus_register_codecs(self, register: Any) -> None:
        register(self.codec)


def _bus(plugin: TaggedPlugin) -> Bus:
    return Bus(Settings(backend="memory"), plugins=[plugin], entry_points=False)


def _inform(receiver: str, sender: str = "cli", **fields: Any) -> ACLMessage:
    return ACLMessage(
        performative=Performative.INFORM, sender_id=sender, receiver_id=receiver, **fields
    )


async def test_a_send_names_its_codec() -> None:
    plugin = TaggedPlugin()
    got: Collector[tuple[ACLMessage, str]] = Collector()
    async with _bus(plugin) as bus:

        @bus.agent("worker").on()
        async def take(msg: ACLMessage, delivery: Delivery) -> None:
            got.add((msg, delivery.received.headers["content-type"]))

        await bus.agent("worker").start()
        await bus.send(_inform("worker", payload={"n": 1}), content_type=TAGGED)
        await bus.send(_inform("worker", payload={"n": 2}))
        [(first, first_type), (second, second_type)] = await got.wait_for(2)
    assert (first.payload, first_type) == ({"n": 1}, TAGGED)
    assert (second.payload, second_type) == ({"n": 2}, JSON)  # the default stays JSON
    assert (plugin.codec.encoded, plugin.codec.decoded) == (1, 1)


async def test_an_agent_codec_applies_to_what_it_sends_and_to_its_replies() -> None:
    plugin = TaggedPlugin()
    async with _bus(plugin) as bus:
        worker = bus.agent("worker", content_type=TAGGED)
        assert worker.content_type == TAGGED

        @worker.on(Performative.REQUEST)
        async def answer(msg: ACLMessage) -> ACLMessage:
            return msg.reply(Performative.INFORM, payload={"sum": sum(msg.payload)})

        await worker.start()
        request = ACLMessage(
            performative=Performative.REQUEST, sender_id="cli", receiver_id="worker", payload=[2, 3]
        )
        reply = await bus.request(request, timeout=2)
        assert reply.payload == {"sum": 5}
        assert (plugin.codec.encoded, plugin.codec.decoded) == (1, 1)  # the reply only
        # A message sent in the agent's name uses its codec; content_type= overrides it.
        seen: Collector[str] = Collector()

        @bus.agent("peer").on()
        async def peer(msg: ACLMessage, delivery: Delivery) -> None:
            seen.add(delivery.received.headers["content-type"])

        await bus.agent("peer").start()
        await bus.send(_inform("peer", sender="worker"))
        await bus.send(_inform("peer", sender="worker"), content_type=JSON)
        assert await seen.wait_for(2) == [TAGGED, JSON]


async def test_an_unknown_codec_is_refused_before_anything_is_sent() -> None:
    async with _bus(TaggedPlugin()) as bus:
        unknown = r"no codec for content type 'application/nope' \(known: application/json, "
        with pytest.raises(EncodeError, match=unknown):
            await bus.send(_inform("worker"), content_type="application/nope")
        with pytest.raises(ConfigurationError, match="no codec is registered for content type"):
            bus.agent("worker", content_type="application/nope")
        assert bus.agent("worker").content_type is None
        assert bus.stats.published == 0
