"""The flow protocol of `aclbus.streaming.flow`: frames, chunking, reassembly, bad input."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from aclbus.acl import ACLMessage
from aclbus.bus import Bus
from aclbus.errors import ACLBusError, ConfigurationError, MessageTooLarge
from aclbus.settings import Settings
from aclbus.streaming import BadFrame, StreamBroken, StreamError
from aclbus.streaming.flow import (
    FLOW_KIND,
    FLOW_SEQ,
    Frame,
    FrameKind,
    Reassembly,
    accept_headers,
    chunk_item,
    decode_frame,
    encode_frame,
    open_headers,
    parse_open,
)
from aclbus.wire import encoded_size

FLOW = "f0123456789abcdef"


def test_errors_derive_from_the_root() -> None:
    """Every stream error is an `ACLBusError`; a bad frame is also a `ValueError`."""
    assert issubclass(StreamError, ACLBusError)
    assert issubclass(BadFrame, StreamBroken)
    assert issubclass(BadFrame, ValueError)


@pytest.mark.parametrize(
    "frame",
    [
        Frame(FLOW, FrameKind.ITEM, 1, b"body", {"content-type": "application/json"}),
        Frame(FLOW, FrameKind.CREDIT, 7, credit=12),
        Frame(FLOW, FrameKind.END, 3, count=2),
        Frame(FLOW, FrameKind.ERROR, 4, b"why", error="ValueError"),
        Frame(FLOW, FrameKind.CANCEL, 5, b"stop"),
        Frame(FLOW, FrameKind.PING, 6),
        Frame(FLOW, FrameKind.DONE, 8),
        Frame(FLOW, FrameKind.CHUNK, 9, b"ab", part=2, parts=3),
        Frame(FLOW, FrameKind.CHUNK, 9, b"ab", part=1, parts=3, size=10, sha256="a" * 64),
    ],
    ids=lambda f: f.kind.value,
)
def test_frames_round_trip(frame: Frame) -> None:
    """What `encode_frame` writes, `decode_frame` reads back the same."""
    headers, body = encode_frame(frame)
    assert all(h == h.lower() for h in headers)
    assert decode_frame(headers, body) == frame


def test_header_names_are_read_case_insensitively() -> None:
    """A client that capitalises header names is understood."""
    headers, body = encode_frame(Frame(FLOW, FrameKind.CREDIT, 2, credit=1))
    shouted = {k.upper(): v for k, v in headers.items()}
    assert decode_frame(shouted, body).credit == 1


@pytest.mark.parametrize(
    ("change", "header"),
    [
        ({FLOW_KIND: "bogus"}, FLOW_KIND),
        ({FLOW_SEQ: "0"}, FLOW_SEQ),
        ({FLOW_SEQ: "-1"}, FLOW_SEQ),
        ({FLOW_SEQ: "1e9"}, FLOW_SEQ),
        ({FLOW_SEQ: "9" * 40}, FLOW_SEQ),
        ({"aclbus-flow-id": "a.b"}, "aclbus-flow-id"),
        ({"aclbus-flow-id": ""}, "aclbus-flow-id"),
    ],
)
def test_bad_headers_are_named(change: dict[str, str], header: str) -> None:
    """A malformed flow header: `BadFrame` naming it."""
    headers, body = encode_frame(Frame(FLOW, FrameKind.PING, 1))
    headers.update(change)
    with pytest.raises(BadFrame) as caught:
        decode_frame(headers, body)
    assert caught.value.header == header


@pytest.mark.parametrize(
    ("frame", "header"),
    [
        (Frame(FLOW, FrameKind.CREDIT, 1), "aclbus-flow-credit"),
        (Frame(FLOW, FrameKind.END, 1), "aclbus-flow-count"),
        (Frame(FLOW, FrameKind.ERROR, 1), "aclbus-flow-error"),
        (Frame(FLOW, FrameKind.CHUNK, 1), "aclbus-flow-part"),
        (Frame(FLOW, FrameKind.CHUNK, 1, part=1, parts=2), "aclbus-flow-size"),
        (Frame(FLOW, FrameKind.CHUNK, 1, part=1, parts=2, size=3), "aclbus-flow-sha256"),
        (
            Frame(FLOW, FrameKind.CHUNK, 1, part=1, parts=2, size=3, sha256="XYZ"),
            "aclbus-flow-sha256",
        ),
    ],
)
def test_missing_fields_are_named(frame: Frame, header: str) -> None:
    """A frame without the field its kind needs: `BadFrame` naming the header."""
    with pytest.raises(BadFrame) as caught:
        decode_frame(*encode_frame(frame))
    assert caught.value.header == header


@pytest.mark.parametrize("part", ["0/2", "3/2", "a/b", "1", "1/2/3"])
def test_bad_part_numbers(part: str) -> None:
    """A chunk number that is not ``i/n`` with 1 <= i <= n is refused."""
    headers, body = encode_frame(Frame(FLOW, FrameKind.CHUNK, 1, part=2, parts=2))
    headers["aclbus-flow-part"] = part
    with pytest.raises(BadFrame, match="aclbus-flow-part"):
        decode_frame(headers, body)


def test_no_headers_at_all() -> None:
    """Garbage without headers: `BadFrame`, never another exception."""
    with pytest.raises(BadFrame):
        decode_frame(None, b"\xff\x00")
    with pytest.raises(BadFrame):
        decode_frame({}, b"")


def test_item_headers_may_not_use_the_flow_prefix() -> None:
    """An item cannot smuggle flow headers in its own."""
    with pytest.raises(BadFrame):
        encode_frame(Frame(FLOW, FrameKind.ITEM, 1, b"", {"aclbus-flow-seq": "9"}))


def test_small_item_is_one_frame() -> None:
    """An item that fits is one ``item`` frame with its own headers."""
    [frame] = chunk_item(FLOW, {"content-type": "text/plain"}, b"hello", 1024)
    assert frame.kind is FrameKind.ITEM
    assert frame.headers == {"content-type": "text/plain"}


@pytest.mark.parametrize("size", [3000, 10_000, 65_537])
def test_chunks_fit_the_limit_and_reassemble(size: int) -> None:
    """Every chunk fits the limit (numbered as large as can be); the item comes back whole."""
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    limit = 1500
    frames = chunk_item(FLOW, {"content-type": "application/octet-stream"}, body, limit)
    assert len(frames) > 1
    assert frames[0].sha256 == hashlib.sha256(body).hexdigest()
    assert frames[0].size == len(body)
    joined = Reassembly(1 << 20)
    result = None
    for seq, frame in enumerate(frames, 1):
        numbered = replace(frame, seq=10**15 + seq)
        headers, wire_body = encode_frame(numbered)
        assert encoded_size(headers, wire_body) <= limit
        assert result is None
        result = joined.add(decode_frame(headers, wire_body))
    assert result == ({"content-type": "application/octet-stream"}, body)
    assert not joined.busy


def test_corrupt_chunk_fails_the_checksum() -> None:
    """A changed byte: the reassembled item fails its SHA-256."""
    frames = chunk_item(FLOW, {}, b"a" * 5000, 1000)
    frames[-1] = replace(frames[-1], body=b"b" * len(frames[-1].body))
    joined = Reassembly(1 << 20)
    for frame in frames[:-1]:
        assert joined.add(frame) is None
    with pytest.raises(StreamBroken, match="checksum"):
        joined.add(frames[-1])


def test_chunks_out_of_order_are_refused() -> None:
    """A chunk that is not the next one breaks the stream."""
    frames = chunk_item(FLOW, {}, b"a" * 5000, 1000)
    joined = Reassembly(1 << 20)
    joined.add(frames[0])
    with pytest.raises(StreamBroken, match="chunk 3"):
        joined.add(frames[2])


def test_too_large_item_is_refused_before_buffering() -> None:
    """A first chunk declaring more than the receiver takes is refused at once."""
    frames = chunk_item(FLOW, {}, b"a" * 5000, 1000)
    with pytest.raises(StreamBroken, match="over the limit"):
        Reassembly(4000).add(frames[0])


def test_more_bytes_than_declared_are_refused() -> None:
    """Chunks that hold more than the declared size break the stream."""
    frames = chunk_item(FLOW, {}, b"a" * 5000, 1000)
    frames[1] = replace(frames[1], body=frames[1].body * 10)
    joined = Reassembly(1 << 20)
    joined.add(frames[0])
    with pytest.raises(StreamBroken, match="more than"):
        joined.add(frames[1])


def test_headers_too_large_for_any_frame() -> None:
    """Item headers that leave no room for a body: `MessageTooLarge`."""
    with pytest.raises(MessageTooLarge):
        chunk_item(FLOW, {"x-big": "v" * 900}, b"a" * 5000, 1000)


def test_open_headers_round_trip() -> None:
    """The opening headers are parsed back; a message without them opens no stream."""
    opened = parse_open(open_headers(FLOW, "pull", 8, 2.5))
    assert opened is not None
    assert (opened.flow, opened.mode, opened.window, opened.idle) == (FLOW, "pull", 8, 2.5)
    assert parse_open({}) is None
    assert accept_headers(FLOW, 8)["aclbus-flow-window"] == "8"


@pytest.mark.parametrize(
    ("change", "header"),
    [
        ({"aclbus-flow-open": "sideways"}, "aclbus-flow-open"),
        ({"aclbus-flow-window": "0"}, "aclbus-flow-window"),
        ({"aclbus-flow-window": "100000"}, "aclbus-flow-window"),
        ({"aclbus-flow-idle": "0"}, "aclbus-flow-idle"),
        ({"aclbus-flow-idle": "nan"}, "aclbus-flow-idle"),
        ({"aclbus-flow-id": "no good"}, "aclbus-flow-id"),
    ],
)
def test_bad_open_headers(change: dict[str, str], header: str) -> None:
    """A malformed opening: `BadFrame` naming the header."""
    headers = {**open_headers(FLOW, "push", 4, 1.0), **change}
    with pytest.raises(BadFrame) as caught:
        parse_open(headers)
    assert caught.value.header == header


async def test_bad_arguments_fail_at_once() -> None:
    """A bad window, timeout or receiver: `ConfigurationError` before anything is sent."""
    async with Bus(Settings(backend="memory")) as bus:
        msg = ACLMessage(performative="request", sender_id="a", receiver_id="b")
        with pytest.raises(ConfigurationError, match="window"):
            bus.request_stream(msg, window=0)
        with pytest.raises(ConfigurationError, match="timeout"):
            bus.request_stream(msg, timeout=-1)
        with pytest.raises(ConfigurationError, match="receiver"):
            bus.request_stream(ACLMessage(performative="request", sender_id="a"))
        with pytest.raises(ConfigurationError, match="window"):
            await bus.send_stream(msg, [1], window=10**6)
