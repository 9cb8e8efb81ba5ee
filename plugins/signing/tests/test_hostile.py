"""Hostile signature headers: whatever a sender puts in them, the verifier only refuses.

A property test on `Verifier.check` itself: arbitrary text in ``aclbus-signature`` and
``aclbus-signature-key``, arbitrary extra headers, and arbitrary bodies never raise anything
but `SignatureRefused`, and never pass unless the signature is the sender's.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aclbus import ACLMessage, Performative, wire
from aclbus.backend import Received
from aclbus.clock import SystemClock
from aclbus.codec import CodecRegistry, JsonCodec
from aclbus_signing import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    KeyRing,
    PrivateKey,
    SeenIds,
    SignatureRefused,
    Verifier,
    canonical,
    signing_input,
)
from aclbus_signing.keys import b64url

ALICE = PrivateKey.from_seed(bytes(range(32)))
CODECS = CodecRegistry()
CODECS.register(JsonCodec())


class _Received(Received):
    async def _ack(self) -> None:
        pass

    async def _nack(self, delay: float | None) -> None:
        pass

    async def _term(self, reason: str | None) -> None:
        pass

    async def _in_progress(self) -> None:
        pass


def check(headers: dict[str, str], body: bytes, msg: ACLMessage) -> str:
    ring = KeyRing({"alice": frozenset({ALICE.key_id})}, None, SystemClock(), 60.0)
    verifier = Verifier(ring, SystemClock(), max_age=600.0, max_skew=60.0, seen=SeenIds(10))
    received = _Received("aclbus.agent.bob", headers, body, sequence=1)
    return asyncio.run(verifier.check(received, msg, "bob", reaches_many=False))


header_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=120)
names = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(signature=header_text, key=header_text, extra=st.dictionaries(names, header_text))
def test_arbitrary_signature_headers_are_only_ever_refused(
    signature: str, key: str, extra: dict[str, str]
) -> None:
    msg = ACLMessage(performative=Performative.INFORM, sender_id="alice", receiver_id="bob")
    headers, body = wire.encode(msg, CODECS)
    headers.update({n: v for n, v in extra.items() if not n.startswith(("ce-", "acl-"))})
    headers[SIGNATURE_HEADER] = signature
    headers[KEY_HEADER] = key
    with pytest.raises(SignatureRefused) as refused:  # and nothing else
        check(headers, body, msg)
    assert refused.value.why


@settings(max_examples=100, deadline=None)
@given(body_change=st.binary(min_size=1, max_size=64), position=st.integers(0, 200))
def test_any_change_to_a_signed_body_is_refused(body_change: bytes, position: int) -> None:
    msg = ACLMessage(
        performative=Performative.INFORM,
        sender_id="alice",
        receiver_id="bob",
        payload={"text": "x" * 100},
    )
    headers, body = wire.encode(msg, CODECS)
    headers[KEY_HEADER] = ALICE.key_id
    headers[SIGNATURE_HEADER] = b64url(ALICE.sign(signing_input(canonical(headers, body))))
    assert check(dict(headers), body, msg) == ALICE.key_id
    cut = position % (len(body) + 1)
    changed = body[:cut] + body_change + body[cut:]
    with pytest.raises(SignatureRefused, match="does not match"):
        check(dict(headers), changed, msg)


def test_a_good_signature_with_stray_characters_is_refused() -> None:
    """base64url is read strictly: characters outside it are not skipped over."""
    msg = ACLMessage(performative=Performative.INFORM, sender_id="alice", receiver_id="bob")
    headers, body = wire.encode(msg, CODECS)
    headers[KEY_HEADER] = ALICE.key_id
    signature = b64url(ALICE.sign(signing_input(canonical(headers, body))))
    for stray in (signature + "!", signature[:40] + " " + signature[40:], signature + "A"):
        with pytest.raises(SignatureRefused, match="not 64 bytes in base64url"):
            check({**headers, SIGNATURE_HEADER: stray}, body, msg)
    assert check({**headers, SIGNATURE_HEADER: signature}, body, msg) == ALICE.key_id


def test_the_seen_id_window() -> None:
    seen = SeenIds(limit=2)
    seen.add("bob", "m1", ("ACLBUS_AGENT", 7), now=0.0, until=10.0)
    assert not seen.replayed("bob", "m1", ("ACLBUS_AGENT", 7), 1.0)  # a redelivery
    assert seen.replayed("bob", "m1", ("ACLBUS_AGENT", 8), 1.0)  # published again
    assert seen.replayed("bob", "m1", ("ACLBUS_BROADCAST", 7), 1.0)  # another stream
    assert seen.replayed("bob", "m1", (None, None), 1.0)  # core NATS: any repeat
    assert not seen.replayed("carol", "m1", ("ACLBUS_AGENT", 8), 1.0)  # per agent
    assert not seen.replayed("bob", "m1", ("ACLBUS_AGENT", 8), 10.0)  # past its window
    seen.add("bob", "m2", (None, None), now=1.0, until=11.0)
    seen.add("bob", "m3", (None, None), now=2.0, until=12.0)  # over the limit: m1 goes
    assert len(seen) == 2
    assert not seen.replayed("bob", "m1", ("ACLBUS_AGENT", 8), 3.0)
    assert seen.replayed("bob", "m3", (None, None), 3.0)
