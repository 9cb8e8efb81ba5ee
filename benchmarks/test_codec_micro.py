"""Micro-benchmarks: an ACLMessage to and from the wire, against plain orjson of the same dict.

Not pass/fail tests (``benchmarks/`` is outside the pytest ``testpaths``); run them with
``.venv/bin/pytest benchmarks --benchmark-only``.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from aclbus import wire
from aclbus._internal.uuid7 import new_id
from aclbus.acl import ACLMessage, Performative, build
from aclbus.codec import CodecRegistry, JsonCodec

PAYLOAD = {"task": "sum", "values": list(range(16)), "note": "x" * 64}


@pytest.fixture
def codecs() -> CodecRegistry:
    registry = CodecRegistry()
    registry.register(JsonCodec())
    return registry


@pytest.fixture
def message() -> ACLMessage:
    return ACLMessage(
        performative=Performative.REQUEST,
        sender_id="client",
        receiver_id="worker",
        message_type="math.sum",
        payload=PAYLOAD,
    )


def test_build_message(benchmark: Any) -> None:
    built = benchmark(
        lambda: ACLMessage(
            performative=Performative.REQUEST,
            sender_id="client",
            receiver_id="worker",
            payload=PAYLOAD,
        )
    )
    assert built.sender_id == "client"


def test_build_message_as_agent_message_does(benchmark: Any) -> None:
    """`acl.build`, which `Agent.message` uses: the same message without pydantic's pass."""
    built = benchmark(
        lambda: build(
            performative=Performative.REQUEST,
            sender_id="client",
            receiver_id="worker",
            payload=PAYLOAD,
        )
    )
    assert built.sender_id == "client"


def test_new_message_id(benchmark: Any) -> None:
    assert len(benchmark(new_id)) == 36


def test_encode_acl_message(benchmark: Any, message: ACLMessage, codecs: CodecRegistry) -> None:
    headers, body = benchmark(wire.encode, message, codecs)
    assert orjson.loads(body) == PAYLOAD
    assert headers


def test_decode_acl_message(benchmark: Any, message: ACLMessage, codecs: CodecRegistry) -> None:
    headers, body = wire.encode(message, codecs)
    decoded = benchmark(wire.decode, headers, body, codecs)
    assert decoded.message_id == message.message_id


def test_orjson_dumps_same_dict(benchmark: Any, message: ACLMessage) -> None:
    as_dict = message.model_dump(mode="json")
    body = benchmark(orjson.dumps, as_dict)
    assert orjson.loads(body) == as_dict


def test_orjson_loads_same_dict(benchmark: Any, message: ACLMessage) -> None:
    body = orjson.dumps(message.model_dump(mode="json"))
    loaded = benchmark(orjson.loads, body)
    assert loaded["payload"] == PAYLOAD
