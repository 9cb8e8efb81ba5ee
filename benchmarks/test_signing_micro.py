"""Micro-benchmarks of aclbus-signing: µs to sign and to verify one message.

Not pass/fail tests (``benchmarks/`` is outside the pytest ``testpaths``); run them with
``.venv/bin/pytest benchmarks/test_signing_micro.py --benchmark-only``. The figures are in
docs/security.md, "Signed envelopes". Encoding the same message is measured beside them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aclbus import wire
from aclbus.acl import ACLMessage, Performative
from aclbus.backend import Received
from aclbus.clock import SystemClock
from aclbus.codec import CodecRegistry, JsonCodec
from aclbus.middleware import Outgoing
from aclbus_signing import KeyRing, PrivateKey, SeenIds, Signing, SigningSettings, Verifier

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


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey.generate()


class _Received(Received):
    """A delivery that settles nowhere: only its headers, body and sequence are read."""

    async def _ack(self) -> None:
        pass

    async def _nack(self, delay: float | None) -> None:
        pass

    async def _term(self, reason: str | None) -> None:
        pass

    async def _in_progress(self) -> None:
        pass


def verifier(key: PrivateKey) -> Verifier:
    ring = KeyRing({"client": frozenset({key.key_id})}, None, SystemClock(), 60.0)
    return Verifier(ring, SystemClock(), max_age=600.0, max_skew=60.0, seen=SeenIds(100_000))


def signing(key: PrivateKey) -> Signing:
    settings = SigningSettings(mode="require", keys_file=None, directory=True)
    return Signing(None, settings, keys={}, default=key, verifier=verifier(key))  # type: ignore[arg-type]


def test_encode(benchmark: Any, message: ACLMessage, codecs: CodecRegistry) -> None:
    headers, _ = benchmark(wire.encode, message, codecs)
    assert headers["ce-source"] == "client"


def test_sign(benchmark: Any, message: ACLMessage, codecs: CodecRegistry, key: PrivateKey) -> None:
    """`Signing.seal`: the canonical form, its SHA-256 and PAE, Ed25519, base64url."""
    headers, body = wire.encode(message, codecs)
    seal = signing(key).seal
    out = Outgoing(message, "aclbus.agent.worker")

    def run() -> dict[str, str]:
        h = dict(headers)
        seal(out, h, body)
        return h

    assert "aclbus-signature" in benchmark(run)


def test_verify(
    benchmark: Any, message: ACLMessage, codecs: CodecRegistry, key: PrivateKey
) -> None:
    """`Verifier.check`, every check of one delivery (each delivery a new stored message)."""
    headers, body = wire.encode(message, codecs)
    signing(key).seal(Outgoing(message, "aclbus.agent.worker"), headers, body)
    check = verifier(key)
    loop = asyncio.new_event_loop()
    sequence = iter(range(1, 10**9))

    def run() -> str:
        # a new stored message each time, to a new agent: no replay, every check runs
        n = next(sequence)
        received = _Received("aclbus.agent.worker", headers, body, sequence=n)
        return loop.run_until_complete(
            check.check(received, message, f"worker{n}", reaches_many=True)
        )

    try:
        assert benchmark(run) == key.key_id
    finally:
        loop.close()
