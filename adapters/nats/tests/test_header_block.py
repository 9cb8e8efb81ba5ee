"""Header blocks as the NATS adapter reads them: nats-py's dict, plus what a dict cannot show.

nats-py keeps the last of two lines with one name and drops a name that is not ASCII; the
adapter reads the raw block itself and hands `aclbus.wire.decode` those defects
(`aclbus.wire.ParsedHeaders`), so that a second ``ce-source`` cannot pass as the first.
"""

from __future__ import annotations

import base64
from types import SimpleNamespace
from typing import Any

import nats.aio.client
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.client import Client

from aclbus import wire
from aclbus.backend import DeliveryMode, Received, SubscriptionSpec
from aclbus.codec import CodecRegistry, JsonCodec
from aclbus.errors import MalformedHeaders
from aclbus_nats.backend import NatsSubscription
from aclbus_nats.headers import (
    NatsHeaders,
    _defect,
    install,
    parse_header_lines,
    read_header_block,
)
from aclbus_nats.stored import stored_headers as _stored_headers

CODECS = CodecRegistry([JsonCodec()])
ENVELOPE = b"ce-specversion: 1.0\r\nce-id: m-1\r\nce-type: fipa.acl.inform\r\n"

_PIECES = [b"a", b"Z", b"-", b"1", b":", b": ", b" ", b"\t", b"\r", b"\n", b"\r\n", b"ce-id"]
_PIECES += [b"\x0b", b"\x1c", b"\x00", b"\x7f", b"\xc3\xa9", b"\xff", b"Status", b"\r\n\r\n"]
_FIRST_LINES = [
    b"NATS/1.0\r\n",
    b"NATS/1.0 503\r\n",
    b"NATS/1.0 503\r\n\r\n",
    b"NATS/1.0 100 Idle Heartbeat\r\n",
    b"NATS/1.0 404 No Messages\r\n",
    b"NATS/1.0 409 Consumer Deleted: x\r\n",
    b"NATS/1.0 ",
    b"NATS/1.0 abc\r\n",
    b"XATS/1.0\r\n",
    b"NATS/1.0X\r\n",
]
blocks = st.builds(
    lambda first, rest, end: first + rest + end,
    st.sampled_from(_FIRST_LINES),
    st.lists(st.sampled_from(_PIECES), max_size=30).map(b"".join),
    st.sampled_from([b"\r\n\r\n", b"\r\n", b""]),
)


async def _nats_py_reads(block: bytes) -> dict[str, str] | Exception | None:
    try:
        return await Client._process_headers(Client(), block)
    except Exception as exc:  # nats-py's own reader fails on some blocks no server sends
        return exc


def test_nats_py_reads_header_lines_itself() -> None:
    """The comparisons below are with nats-py's own line parser, not the e-mail one."""
    assert nats.aio.client.parse_email is None


@given(blocks)
async def test_the_block_reader_gives_the_headers_nats_py_gives(block: bytes) -> None:
    """Installed on a connection, the reader changes nothing nats-py itself relies on
    (``Status``, ``Description``, the headers of heartbeats) and never raises."""
    nc = Client()
    install(nc)
    got = await nc._process_headers(block)
    expected = await _nats_py_reads(block)
    if isinstance(expected, Exception):
        return
    # (an empty result is None to nats-py; here it is an empty mapping when it has a defect)
    assert (dict(got) if got else None) == (expected or None)


@given(blocks)
def test_the_block_reader_never_raises_and_always_explains_a_defect(block: bytes) -> None:
    headers = read_header_block(block)
    if isinstance(headers, NatsHeaders) and headers.defect is not None:
        assert headers.defect.field.isprintable()
        assert headers.defect.field.isascii()
    else:
        assert headers is None or isinstance(headers, NatsHeaders)


_lines = st.builds(
    lambda rest, end: rest + end,
    st.lists(st.sampled_from([*_PIECES, b"CE-ID", b"x-a", b"X-A"]), max_size=30).map(b"".join),
    st.sampled_from([b"\r\n\r\n", b"\r\n", b""]),
)


@given(_lines)
def test_the_quick_reading_finds_what_reading_line_by_line_finds(raw: bytes) -> None:
    """The usual block is checked all at once: never more leniently than line by line."""
    quick = parse_header_lines(raw).defect
    slow = _defect(raw)
    assert (quick is None) == (slow is None)
    if quick is not None and slow is not None:
        assert (quick.field, quick.problem) == (slow.field, slow.problem)


def test_a_usual_block_has_no_defect() -> None:
    block = b"NATS/1.0\r\n" + ENVELOPE + b"ce-source: alice\r\nNats-Msg-Id: m-1\r\n\r\n"
    headers = read_header_block(block)
    assert isinstance(headers, NatsHeaders)
    assert headers.defect is None
    assert headers.status is None
    assert wire.decode(headers, b"", CODECS).sender_id == "alice"


@pytest.mark.parametrize(
    ("lines", "field"),
    [
        (b"ce-source: alice\r\nce-source: mallory\r\n", "ce-source"),
        (b"ce-source: alice\r\nce-source: alice\r\n", "ce-source"),
        (b"ce-source: alice\r\nacl-receiver-id: a\r\nacl-receiver-id: b\r\n", "acl-receiver-id"),
        (b"ce-source: alice\r\ncontent-type: a/b\r\ncontent-type: a/b\r\n", "content-type"),
        (b"ce-source: alice\r\naclbus-replay-of: 1\r\naclbus-replay-of: 2\r\n", "aclbus-replay-of"),
        (b"ce-source: alice\r\nx-tenant: a\r\nx-tenant: b\r\n", "x-tenant"),
    ],
)
def test_a_header_given_twice_in_one_block_is_a_defect(lines: bytes, field: str) -> None:
    headers = read_header_block(b"NATS/1.0\r\n" + ENVELOPE + lines + b"\r\n")
    assert isinstance(headers, NatsHeaders)
    assert headers.defect is not None
    assert headers.defect.field == field
    with pytest.raises(MalformedHeaders) as exc:
        wire.decode(headers, b"", CODECS)
    assert exc.value.field == field


@pytest.mark.parametrize(
    ("lines", "field"),
    [
        (b"ce-source: alice\r\nCE-SOURCE: mallory\r\n", "ce-source"),
        (b"ce-source: alice\r\ncontent-type: a/b\r\nContent-Type: a/b\r\n", "content-type"),
    ],
)
def test_names_differing_in_case_are_kept_apart_for_decode_to_refuse(
    lines: bytes, field: str
) -> None:
    """A mapping can show those (two keys): the reader keeps both, decode refuses them."""
    headers = read_header_block(b"NATS/1.0\r\n" + ENVELOPE + lines + b"\r\n")
    assert headers is not None
    with pytest.raises(MalformedHeaders) as exc:
        wire.decode(headers, b"", CODECS)
    assert exc.value.field == field


@pytest.mark.parametrize(
    "lines",
    [
        b"x-tenant: a\r\nx-tenant: a\r\n",  # an application header repeated with its value
        b"Nats-Msg-Id: a\r\nNats-Msg-Id: b\r\n",  # the server's, not the envelope's
    ],
)
def test_some_repeated_headers_are_no_defect(lines: bytes) -> None:
    headers = read_header_block(b"NATS/1.0\r\n" + ENVELOPE + b"ce-source: alice\r\n" + lines)
    assert isinstance(headers, NatsHeaders)
    assert headers.defect is None


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (b"ce-source\xff: mallory", "ce-source\\xff"),
        (b"\xc3\xa9: x", "\\xc3\\xa9"),
        (b"bad name: x", "bad name"),
        (b" ce-source: mallory", " ce-source"),
        (b"ce-source : mallory", "ce-source "),
        (b"ce-source\x00: mallory", "ce-source\\x00"),
        (b": no name", "headers (an empty header name)"),
        (b"no colon at all", "headers"),
    ],
)
def test_a_line_whose_name_is_not_a_token_is_a_defect(line: bytes, field: str) -> None:
    """nats-py drops such a line (or strips the name); the message must not pass for clean."""
    block = b"NATS/1.0\r\n" + ENVELOPE + b"ce-source: alice\r\n" + line + b"\r\n\r\n"
    headers = read_header_block(block)
    assert isinstance(headers, NatsHeaders)
    assert headers.defect is not None
    assert headers.defect.field == field
    with pytest.raises(MalformedHeaders):
        wire.decode(headers, b"", CODECS)


def test_a_block_of_bad_names_only_still_carries_its_defect() -> None:
    headers = read_header_block(b"NATS/1.0\r\n\xff: x\r\n\r\n")
    assert headers is not None
    assert headers == {}
    with pytest.raises(MalformedHeaders):
        wire.decode(headers, b"", CODECS)


def test_a_block_that_does_not_start_with_the_nats_line_is_a_defect() -> None:
    headers = read_header_block(b"XATS/1.0\r\n" + ENVELOPE + b"ce-source: alice\r\n\r\n")
    assert isinstance(headers, NatsHeaders)
    assert headers.defect is not None
    assert headers.defect.field == "headers"


@pytest.mark.parametrize(
    ("block", "status"),
    [
        (b"NATS/1.0 503\r\n\r\n", "503"),
        (b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 3\r\n\r\n", "100"),
        (b"NATS/1.0 404 No Messages\r\n\r\n", "404"),
        (b"NATS/1.0 abc\r\n" + ENVELOPE + b"ce-source: alice\r\n\r\n", "abc"),
    ],
)
async def test_a_status_line_makes_a_status_frame(block: bytes, status: str) -> None:
    """A status frame is the server's word to a client, never an aclbus message."""
    for headers in (read_header_block(block), await _installed()._process_headers(block)):
        assert isinstance(headers, NatsHeaders)
        assert headers.status == status
        assert headers.defect is not None
        with pytest.raises(MalformedHeaders):
            wire.decode(headers, b"", CODECS)


def _installed() -> Client:
    nc = Client()
    install(nc)
    return nc


def test_the_line_parser_keeps_nats_py_s_dict_and_adds_the_defect() -> None:
    raw = b"ce-id: 42\r\nacl-receiver-id:  bob \r\nBad Name: x\r\nce-id: 43\r\n\r\n"
    headers = parse_header_lines(raw)
    assert headers == Client._parse_header_lines(raw) == {"ce-id": "43", "acl-receiver-id": "bob"}
    assert isinstance(headers, NatsHeaders)
    assert headers.defect is not None


def test_stored_messages_keep_the_defect() -> None:
    """What the DLQ and replay read back from a stream says what the delivery said."""
    block = b"NATS/1.0\r\n" + ENVELOPE + b"ce-source: alice\r\nce-source: mallory\r\n\r\n"
    stored = _stored_headers(base64.b64encode(block).decode())
    assert isinstance(stored, NatsHeaders)
    assert stored["ce-source"] == "mallory"
    with pytest.raises(MalformedHeaders) as exc:
        wire.decode(stored, b"", CODECS)
    assert exc.value.field == "ce-source"
    clean = _stored_headers(base64.b64encode(b"NATS/1.0\r\n" + ENVELOPE + b"\r\n").decode())
    assert clean == {"ce-specversion": "1.0", "ce-id": "m-1", "ce-type": "fipa.acl.inform"}
    assert _stored_headers(None) == {}


# -- status frames never reach a handler --------------------------------------------------------


class _Connection:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, subject: str, payload: bytes = b"", **_: Any) -> None:
        self.published.append((subject, payload))


def _subscription(mode: DeliveryMode) -> tuple[NatsSubscription, list[Received], _Connection]:
    nc = _Connection()
    backend: Any = SimpleNamespace(nc=nc, connected=True)
    handled: list[Received] = []

    async def handler(received: Received) -> None:
        handled.append(received)

    sub = NatsSubscription(backend, SubscriptionSpec(subject="p.agent.a", mode=mode), handler)
    return sub, handled, nc


def _msg(block: bytes, reply: str, body: bytes = b"") -> Any:
    return SimpleNamespace(
        subject="p.agent.a", reply=reply, data=body, headers=read_header_block(block)
    )


async def test_a_status_frame_on_a_core_subscription_is_dropped() -> None:
    sub, handled, nc = _subscription(DeliveryMode.AT_MOST_ONCE)
    await sub.on_core_message(_msg(b"NATS/1.0 503\r\n\r\n", "_INBOX.x"))
    await sub.on_core_message(_msg(b"NATS/1.0 100 Idle Heartbeat\r\n\r\n", "", b"{}"))
    assert handled == []
    assert nc.published == []  # not answered either
    await sub.on_core_message(_msg(b"NATS/1.0\r\n" + ENVELOPE + b"ce-source: a\r\n\r\n", ""))
    assert len(handled) == 1


async def test_a_stored_message_claiming_a_status_is_terminated_unseen() -> None:
    """JetStream (2.15) drops such a block when it stores the message; should one ever be
    delivered with it, it is settled (no redelivery loop) and no handler or DLQ sees it."""
    sub, handled, nc = _subscription(DeliveryMode.AT_LEAST_ONCE)
    ack = "$JS.ACK.P_AGENT.p-agent-a.1.7.7.1700000000000000000.0"
    await sub.on_js_message(_msg(b"NATS/1.0 503\r\n\r\n", ack))
    assert handled == []
    [(subject, payload)] = nc.published
    assert subject == ack
    assert payload.startswith(b"+TERM")


@pytest.mark.parametrize(
    "block", [b"NATS/1.0 \xff\xfe\xfd\r\n\r\n", b"NATS/1.0 503 \xff\r\nx: y\r\n\r\n"]
)
async def test_a_status_line_nats_py_cannot_read_is_still_read(block: bytes) -> None:
    """nats-py raises on these, which would end its reading task: any peer can send one."""
    with pytest.raises(UnicodeDecodeError):
        await Client._process_headers(Client(), block)
    headers = await _installed()._process_headers(block)
    assert isinstance(headers, NatsHeaders)
    assert headers.status is not None
    assert headers.defect is not None
