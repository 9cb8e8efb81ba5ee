"""Hostile input at the security boundary: whatever a client puts on the wire, the agent lives on.

A hand-written NATS connection (raw_client.py) publishes what hypothesis draws, to an agent's
inbox on a real nats-server: header blocks of arbitrary bytes (a status line, names that are
no tokens, bytes that are not UTF-8, a header given twice, lines with no colon, a block with
no end), valid envelopes with one field's value replaced by arbitrary text, and arbitrary
bodies. Each drawn batch is followed by a valid message. The properties:

- the valid message after the batch is handled: the consumer never stopped;
- every stored message is settled: nothing is left unacknowledged to come back forever;
- what is not a valid message is dead-lettered with a reason that names it malformed (never
  ``handler-error`` or ``max-deliver``, which would mean the pipeline itself failed on it), or
  dropped unseen where it claims to be a status frame;
- nothing is logged at ERROR: no traceback escaped the pipeline.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import nats
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.js import JetStreamContext

from aclbus.acl import ACLMessage
from aclbus.bus import Bus
from aclbus.dlq import Reason
from aclbus.settings import Settings, StreamLimits
from aclbus.subjects import TrafficClass
from aclbus.testing.collector import Collector, eventually
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.settings import NatsSettings

from .raw_client import RawConnection, raw_block, raw_envelope

WAIT = 10.0

# -- what a hostile client sends ----------------------------------------------------------------

_PIECES = [b"a", b"Z", b"-", b"1", b":", b": ", b" ", b"\t", b"\r", b"\n", b"\r\n", b"ce-id"]
_PIECES += [b"\x0b", b"\x00", b"\x7f", b"\xc3\xa9", b"\xff", b"ce-source: eve", b"\r\n\r\n"]
_FIRST_LINES = [b"NATS/1.0\r\n", b"NATS/1.0 503\r\n", b"NATS/1.0 abc\r\n", b"XATS/1.0\r\n", b""]
_FIELDS = [
    b"ce-specversion",
    b"ce-id",
    b"ce-type",
    b"ce-source",
    b"ce-time",
    b"acl-receiver-id",
    b"acl-reply-to",
    b"acl-conversation-id",
    b"acl-hops",
    b"acl-ttl",
    b"acl-caused-by",
    b"content-type",
]

garbage_blocks = st.builds(
    lambda first, rest, end: first + rest + end,
    st.sampled_from(_FIRST_LINES),
    st.lists(st.sampled_from(_PIECES), max_size=40).map(b"".join),
    st.sampled_from([b"\r\n\r\n", b"\r\n", b""]),
)


@st.composite
def damaged_envelopes(draw: st.DrawFn) -> bytes:
    """A valid envelope with one field given an arbitrary value, or given twice, or dropped."""
    lines = [*raw_envelope(), b"ce-source: alice"]
    field = draw(st.sampled_from(_FIELDS))
    value = draw(st.binary(max_size=80).filter(lambda v: b"\r" not in v and b"\n" not in v))
    kept = [line for line in lines if not line.lower().startswith(field + b":")]
    how = draw(st.sampled_from(["replace", "twice", "drop", "huge"]))
    if how == "replace":
        kept.append(field + b": " + value)
    elif how == "twice":
        kept += [field + b": " + value, field + b": " + value + b"x"]
    elif how == "huge":
        kept.append(field + b": " + b"x" * draw(st.integers(1_000, 60_000)))
    return raw_block(*kept)


bodies = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b"", b"{}", b"null", b"[", b'{"a":', b"\xff\xfe", b"1e999999", b'"\\ud800"']),
    st.integers(1, 60).map(lambda depth: b"[" * depth * 100 + b"]" * depth * 100),
)
hostile = st.tuples(st.one_of(garbage_blocks, damaged_envelopes()), bodies)

# Reasons that say the message, not the pipeline, was at fault (aclbus.dlq.Reason).
_REFUSED = {Reason.MALFORMED, Reason.MALFORMED_HEADERS, Reason.EXPIRED, Reason.HOP_LIMIT}


@dataclass
class Target:
    bus: Bus
    raw: RawConnection
    js: JetStreamContext
    inbox: str
    stream: str
    got: Collector[ACLMessage]


@pytest_asyncio.fixture
async def target(nats_server: EmbeddedServer) -> AsyncIterator[Target]:
    prefix = "hi-" + uuid.uuid4().hex[:8]
    settings = Settings(
        backend="nats",
        subject_prefix=prefix,
        streams=StreamLimits(max_bytes=16 << 20, storage="memory"),
    )
    bus = Bus(
        settings,
        backend=NatsBackend(settings, nats=NatsSettings(servers=[nats_server.url])),
        entry_points=False,
    )
    got: Collector[ACLMessage] = Collector()

    @bus.agent("svc").on()
    async def handle(msg: ACLMessage) -> None:
        got.add(msg)

    await bus.start()
    raw = await RawConnection.open(nats_server.url)
    nc = await nats.connect(nats_server.url)
    try:
        yield Target(
            bus,
            raw,
            nc.jetstream(),
            f"{prefix}.agent.svc",
            bus.subjects.stream(TrafficClass.INBOX),
            got,
        )
    finally:
        await raw.close()
        await bus.stop()
        for info in await nc.jetstream().streams_info():
            if (info.config.name or "").startswith(prefix.upper().replace("-", "_")):
                await nc.jetstream().delete_stream(info.config.name or "")
        await nc.close()


@settings(
    max_examples=60,
    deadline=None,
    # One server, bus and connection serve every example: each example's checks are on what
    # it added (counts before and after), so nothing needs resetting between examples.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(hostile, min_size=1, max_size=10))
async def test_whatever_arrives_the_agent_lives_on_and_refuses_it_by_name(
    target: Target, batch: list[tuple[bytes, bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    caplog.clear()
    for block, body in batch:
        await target.raw.hpub(target.inbox, block, body)
    sentinel = ACLMessage(performative="inform", sender_id="alice", receiver_id="svc")
    await target.bus.send(sentinel)

    async def sentinel_handled() -> bool:
        return any(m.message_id == sentinel.message_id for m in target.got.items)

    await eventually(sentinel_handled, timeout=WAIT, what="the valid message after the batch")

    async def all_settled() -> bool:
        for info in await target.js.consumers_info(target.stream):
            if info.num_ack_pending or info.num_pending:
                return False
        return True

    await eventually(all_settled, timeout=WAIT, what="every stored message settled")
    letters = await target.bus.dead_letters.list(origin="svc")
    assert {letter.reason for letter in letters} <= _REFUSED, [
        (letter.reason, letter.error) for letter in letters if letter.reason not in _REFUSED
    ]
    assert target.bus.backend.connected
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_header_name_no_backend_can_send_again_is_dead_lettered_once(
    target: Target,
) -> None:
    """Found by the property above: a name with a NUL or a control character made the dead
    letter itself unsendable (nats-py refuses the name), so the message came back until
    ``max_deliver`` and was then lost with an error. The letter now leaves such names out and
    keeps the defect, which still refuses the message when read back."""
    for name in (b"\x00", b"\x00bad\x7f", b"bad\x01name"):
        block = raw_block(*raw_envelope(), b"ce-source: alice", name + b": x")
        await target.raw.hpub(target.inbox, block, b"{}")

    async def all_dead() -> bool:
        return len(await target.bus.dead_letters.list(origin="svc")) == 3

    await eventually(all_dead, timeout=WAIT, what="three dead letters")
    letters = await target.bus.dead_letters.list(origin="svc")
    assert {letter.reason for letter in letters} == {Reason.MALFORMED_HEADERS}
    assert {letter.attempts for letter in letters} == {1}
    assert len(target.got) == 0
