"""The NATS adapter's hot path: header parsing and pipelined PubAcks on one reply inbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.js.api import Header

from aclbus.backend import DeliveryMode, StreamSpec
from aclbus.errors import NoResponders, NoStream, RequestTimeout
from aclbus.settings import Settings
from aclbus_nats.backend import NatsBackend
from aclbus_nats.headers import (
    _NAMES,
    _VALUES,
    _usual_names,
    _usual_values,
    header_block,
    parse_header_lines,
)
from aclbus_nats.settings import NatsSettings

# Bytes that matter to a header parser: separators, whitespace of every kind str.isspace
# knows in ASCII, non-ASCII and invalid UTF-8.
_PIECES = [b"a", b"Z", b"-", b"1", b":", b": ", b" ", b"\t", b"\r", b"\n", b"\r\n"]
_PIECES += [b"\x0b", b"\x0c", b"\x1c", b"\x1f", b"\x00", b"\x7f", b"\xc3\xa9", b"\xff", b"\x85"]


@given(st.lists(st.sampled_from(_PIECES), max_size=40).map(b"".join))
def test_header_parser_reads_what_nats_py_reads(raw: bytes) -> None:
    assert parse_header_lines(raw) == Client._parse_header_lines(raw)


def test_header_parser_reads_an_aclbus_header_block() -> None:
    raw = b"ce-id: 42\r\nacl-receiver-id:  bob \r\nBad Name: x\r\nce-id: 43\r\n\r\n"
    assert parse_header_lines(raw) == {"ce-id": "43", "acl-receiver-id": "bob"}


_TEXT = st.text(alphabet=st.sampled_from(list("aZ09-_.:; \t\r\n\x00\x7fé!~")), max_size=12)


class _Recorder:
    """Stands in for the connection's socket writer: what nats-py would send."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def __call__(self, cmd: bytes, priority: bool = False) -> None:
        self.sent.append(cmd)


async def _nats_py_writes(headers: dict[str, str]) -> bytes | Exception:
    nc = Client()
    recorder = _Recorder()
    nc._send_command = recorder  # type: ignore[method-assign]
    try:
        await Client._send_publish(nc, "s", "", b"body", 4, headers)
    except Exception as exc:
        return exc
    return recorder.sent[0]


_NAME = st.text(alphabet=st.sampled_from(list("aZ09-_.!~")), min_size=1, max_size=12)
_VALUE = st.text(alphabet=st.sampled_from(list("aZ09-_.:; !~")), max_size=12)


@given(st.one_of(st.dictionaries(_TEXT, _TEXT, max_size=6), st.dictionaries(_NAME, _VALUE)))
async def test_header_block_is_what_nats_py_writes(headers: dict[str, str]) -> None:
    """Where the fast writer takes a block, it is byte for byte nats-py's; else it declines."""
    block = header_block(headers)
    expected = await _nats_py_writes(headers)
    if block is None:
        return  # nats-py writes it (or refuses it) itself
    assert not isinstance(expected, Exception)
    head = f"HPUB s  {len(block)} {len(block) + 4}\r\n".encode()
    assert expected == head + block + b"body\r\n"


@given(st.lists(_TEXT, min_size=1, max_size=6).map("\x00".join))
def test_the_quick_header_checks_accept_only_what_the_patterns_accept(joined: str) -> None:
    """The string-method checks are a shortcut: never looser than the regular expressions."""
    if _usual_names(joined):
        assert _NAMES.fullmatch(joined)
    if _usual_values(joined):
        assert _VALUES.fullmatch(joined)


def test_the_quick_header_checks_take_what_aclbus_writes() -> None:
    assert _usual_names("ce-id\x00acl-receiver-id\x00Nats-Msg-Id")
    assert _usual_values("1.0\x002026-12-02T14:47:59.998585Z\x00\x00fipa.acl.inform")
    assert not _usual_names("ce-id\x00\x00b")
    assert not _usual_names("a_b")  # a token nats-py takes, left to the pattern
    assert not _usual_values("a\x00 b")
    assert not _usual_values("a\tb")


async def test_an_aclbus_header_block_takes_the_fast_way() -> None:
    headers = {"ce-id": "019c-1", "ce-type": "fipa.acl.inform", "Nats-Msg-Id": "019c-1"}
    block = header_block(headers)
    assert block == (
        b"NATS/1.0\r\nce-id: 019c-1\r\nce-type: fipa.acl.inform\r\nNats-Msg-Id: 019c-1\r\n\r\n"
    )
    # nats-py's own JetStream headers are str enums: their text is written, not their name
    expected = Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value
    assert header_block({Header.EXPECTED_LAST_SUBJECT_SEQUENCE: "0"}) == (
        f"NATS/1.0\r\n{expected}: 0\r\n\r\n".encode()
    )
    assert header_block({"bad name": "x"}) is None
    assert header_block({"0\x000": ""}) is None  # NUL is no separator inside a name
    assert header_block({"a": "1\x002"}) is None
    assert header_block({"a": " padded"}) is None
    assert header_block({}) is None


@pytest_asyncio.fixture
async def backend(nats_url: str) -> AsyncIterator[NatsBackend]:
    settings = Settings(backend="nats", subject_prefix="hot")
    running = NatsBackend(settings, nats=NatsSettings(servers=[nats_url], publish_timeout=2.0))
    await running.connect()
    await running.provision(StreamSpec(name="HOT", subjects=("hot.>",), storage="memory"))
    try:
        yield running
    finally:
        await running.close()


async def test_concurrent_publishes_each_get_their_own_puback(backend: NatsBackend) -> None:
    acks = await asyncio.gather(
        *(
            backend.publish(f"hot.s.{i % 3}", {"n": str(i)}, b"x", msg_id=f"m{i}")
            for i in range(300)
        )
    )
    assert len({ack.sequence for ack in acks}) == 300  # 300 PubAcks, none matched twice
    assert all(ack.stream == "HOT" and not ack.duplicate for ack in acks)
    again = await backend.publish("hot.s.0", {}, b"x", msg_id="m0")
    assert again.duplicate


async def test_headers_passed_in_are_left_as_they_were(backend: NatsBackend) -> None:
    headers = {"a": "1"}
    await backend.publish("hot.h", headers, b"x", msg_id="h1", ttl=5.0)
    await backend.publish("hot.h", headers, b"x", mode=DeliveryMode.AT_MOST_ONCE)
    assert headers == {"a": "1"}


async def test_no_stream_and_no_responders_fail_at_once(backend: NatsBackend) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(NoStream):
        await backend.publish("nostream.x", {}, b"x")
    with pytest.raises(NoResponders):
        await backend.request("nobody.listens", {}, b"?", timeout=5.0)
    assert loop.time() - started < 4.0  # neither waited for its timeout


async def test_request_without_a_reply_times_out(backend: NatsBackend) -> None:
    nc = backend._nc
    assert nc is not None
    silent = await nc.subscribe("quiet.listener")  # listens, never answers
    try:
        with pytest.raises(RequestTimeout, match=r"quiet\.listener"):
            await backend.request("quiet.listener", {}, b"?", timeout=0.2)
    finally:
        await silent.unsubscribe()
