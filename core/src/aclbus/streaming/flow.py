"""The wire protocol of a flow: frames as ``aclbus-flow-*`` headers plus a body.

A flow joins a sender of items and their receiver over two core (``at_most_once``) subjects,
``{prefix}.flow.{id}.data`` (sender to receiver) and ``{prefix}.flow.{id}.ctl`` (receiver to
sender). Every frame carries the flow id, its kind and a sequence number (from 1, per
direction), so a lost or repeated frame is detected. An item is one ``item`` frame, or, when it
does not fit in one message, ``chunk`` frames ``i/n`` whose first one declares the item's size
and the SHA-256 of its body. Each ``item`` and ``chunk`` frame costs one credit: the sender has
at most ``window`` of them unacknowledged; the receiver returns credit (a cumulative count of
the frames it consumed) as its reader takes them.

The stream is opened by an ACL message (a request) whose application headers say
``aclbus-flow-open`` (``pull``: the opener receives; ``push``: the opener sends), and accepted
by an ACL reply carrying ``aclbus-flow-accept``.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Final

from aclbus.errors import InvalidIdentifier, MessageTooLarge
from aclbus.streaming.errors import BadFrame, StreamBroken
from aclbus.subjects import validate_id
from aclbus.wire import encoded_size

__all__ = [
    "FLOW_ACCEPT",
    "FLOW_COUNT",
    "FLOW_CREDIT",
    "FLOW_ERROR",
    "FLOW_ID",
    "FLOW_IDLE",
    "FLOW_KIND",
    "FLOW_OPEN",
    "FLOW_PART",
    "FLOW_SEQ",
    "FLOW_SHA256",
    "FLOW_SIZE",
    "FLOW_WINDOW",
    "MAX_WINDOW",
    "OCTET_STREAM",
    "Frame",
    "FrameKind",
    "OpenRequest",
    "Reassembly",
    "accept_headers",
    "chunk_item",
    "decode_frame",
    "encode_frame",
    "open_headers",
    "parse_open",
]

FLOW_ID: Final = "aclbus-flow-id"
FLOW_KIND: Final = "aclbus-flow-kind"
FLOW_SEQ: Final = "aclbus-flow-seq"
FLOW_CREDIT: Final = "aclbus-flow-credit"
FLOW_PART: Final = "aclbus-flow-part"
FLOW_SIZE: Final = "aclbus-flow-size"
FLOW_SHA256: Final = "aclbus-flow-sha256"
FLOW_COUNT: Final = "aclbus-flow-count"
FLOW_ERROR: Final = "aclbus-flow-error"
FLOW_OPEN: Final = "aclbus-flow-open"
FLOW_ACCEPT: Final = "aclbus-flow-accept"
FLOW_WINDOW: Final = "aclbus-flow-window"
FLOW_IDLE: Final = "aclbus-flow-idle"

MAX_WINDOW: Final = 4096
"""The largest window a flow may declare (frames unacknowledged at once)."""

OCTET_STREAM: Final = "application/octet-stream"
"""The content type of a pushed item that is raw bytes (sent as they are, not encoded)."""

_PREFIX: Final = "aclbus-flow-"
_MAX_SEQ: Final = 2**53
_MAX_PARTS: Final = 99_999_999
_INT: Final = re.compile(r"[0-9]{1,16}")
_PART: Final = re.compile(r"([0-9]{1,8})/([0-9]{1,8})")
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_IDLE: Final = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6})?")
# Worst-case values of the numeric headers of a chunk, to size its body before numbering it.
_WIDEST: Final = {
    FLOW_SEQ: "9" * 16,
    FLOW_PART: f"{_MAX_PARTS}/{_MAX_PARTS}",
    FLOW_SIZE: "9" * 16,
}


class FrameKind(StrEnum):
    """What a frame is (its ``aclbus-flow-kind`` header)."""

    ITEM = "item"
    """A whole item: the body, with its own headers (an ACL envelope, or ``content-type``)."""
    CHUNK = "chunk"
    """One part ``i/n`` of an item too large for one message."""
    END = "end"
    """The sender has no more items; ``aclbus-flow-count`` says how many it sent."""
    ERROR = "error"
    """The other side's code raised: ``aclbus-flow-error`` names the type, the body says why."""
    CREDIT = "credit"
    """Receiver to sender: ``aclbus-flow-credit`` frames consumed so far (cumulative)."""
    CANCEL = "cancel"
    """Stop the flow: the body says why. Either side may send it."""
    DONE = "done"
    """Receiver to sender (push flows): the handler finished; its reply, if any, follows."""
    PING = "ping"
    """Nothing to say, but alive: sent when a side has been silent for a third of the idle
    timeout."""


_CREDITED: Final = frozenset({FrameKind.ITEM, FrameKind.CHUNK})


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of a flow.

    Attributes:
        flow: The flow id.
        kind: What the frame is.
        seq: Its sequence number in its direction, from 1.
        body: Its body (an item or a part of one, an error's message, a reply's payload).
        headers: The headers it carries beside the flow's own (an item's envelope).
        credit: ``credit``: frames consumed by the receiver so far.
        part: ``chunk``: which part, from 1.
        parts: ``chunk``: how many parts the item has.
        size: ``chunk`` 1: the size of the item's whole body, in bytes.
        sha256: ``chunk`` 1: the hex SHA-256 of the item's whole body.
        count: ``end``: how many items were sent.
        error: ``error``: the name of the exception's type.
    """

    flow: str
    kind: FrameKind
    seq: int = 0
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    credit: int | None = None
    part: int | None = None
    parts: int | None = None
    size: int | None = None
    sha256: str | None = None
    count: int | None = None
    error: str | None = None

    @property
    def credited(self) -> bool:
        """Whether the frame costs a credit of the window (``item`` and ``chunk``)."""
        return self.kind in _CREDITED


def encode_frame(frame: Frame) -> tuple[dict[str, str], bytes]:
    """The headers and body of a frame on the wire.

    Raises:
        BadFrame: The frame's own headers use the reserved ``aclbus-flow-`` prefix.
    """
    headers = {FLOW_ID: frame.flow, FLOW_KIND: frame.kind.value, FLOW_SEQ: str(frame.seq)}
    if frame.credit is not None:
        headers[FLOW_CREDIT] = str(frame.credit)
    if frame.part is not None and frame.parts is not None:
        headers[FLOW_PART] = f"{frame.part}/{frame.parts}"
    if frame.size is not None:
        headers[FLOW_SIZE] = str(frame.size)
    if frame.sha256 is not None:
        headers[FLOW_SHA256] = frame.sha256
    if frame.count is not None:
        headers[FLOW_COUNT] = str(frame.count)
    if frame.error is not None:
        headers[FLOW_ERROR] = frame.error
    for name, value in frame.headers.items():
        if name.lower().startswith(_PREFIX):
            raise BadFrame(name, "an item's own headers may not use the aclbus-flow- prefix")
        headers[name] = value
    return headers, frame.body


def decode_frame(headers: Mapping[str, str] | None, body: bytes) -> Frame:
    """Read a frame from the wire: header names case-insensitive, every flow header checked.

    Raises:
        BadFrame: A flow header is missing or malformed; ``header`` names which.
    """
    if not headers:
        raise BadFrame("headers", "missing: a frame carries its flow headers")
    flow: dict[str, str] = {}
    rest: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise BadFrame("headers", "header names and values must be text")
        key = name.lower()
        if key.startswith(_PREFIX):
            flow[key] = value.strip(" \t")
        else:
            rest[name] = value
    flow_id = _required(flow, FLOW_ID)
    try:
        validate_id(flow_id, "flow id")
    except InvalidIdentifier as exc:
        raise BadFrame(FLOW_ID, str(exc)) from None
    raw_kind = _required(flow, FLOW_KIND)
    try:
        kind = FrameKind(raw_kind)
    except ValueError:
        raise BadFrame(
            FLOW_KIND, f"{raw_kind[:32]!r} is not one of {', '.join(k.value for k in FrameKind)}"
        ) from None
    seq = _int(flow, FLOW_SEQ, low=1, required=True)
    assert seq is not None
    frame = Frame(flow_id, kind, seq, body, rest)
    if kind is FrameKind.CREDIT:
        return replace(frame, credit=_int(flow, FLOW_CREDIT, low=0, required=True))
    if kind is FrameKind.END:
        return replace(frame, count=_int(flow, FLOW_COUNT, low=0, required=True))
    if kind is FrameKind.ERROR:
        return replace(frame, error=_required(flow, FLOW_ERROR)[:128])
    if kind is FrameKind.CHUNK:
        return _chunk(frame, flow)
    return frame


def _chunk(frame: Frame, flow: dict[str, str]) -> Frame:
    raw = _required(flow, FLOW_PART)
    match = _PART.fullmatch(raw)
    if match is None:
        raise BadFrame(FLOW_PART, f"must be 'i/n' with 1 <= i <= n, got {raw[:32]!r}")
    part, parts = int(match[1]), int(match[2])
    if not 1 <= part <= parts:
        raise BadFrame(FLOW_PART, f"must be 'i/n' with 1 <= i <= n, got {raw[:32]!r}")
    if part != 1:
        return replace(frame, part=part, parts=parts)
    size = _int(flow, FLOW_SIZE, low=1, required=True)
    digest = _required(flow, FLOW_SHA256)
    if not _SHA256.fullmatch(digest):
        raise BadFrame(FLOW_SHA256, "must be 64 lower-case hex digits (a SHA-256)")
    return replace(frame, part=part, parts=parts, size=size, sha256=digest)


def _required(flow: dict[str, str], header: str) -> str:
    value = flow.get(header)
    if value is None or not value:
        raise BadFrame(header, "missing (required header)")
    return value


def _int(flow: dict[str, str], header: str, *, low: int, required: bool = False) -> int | None:
    raw = flow.get(header)
    if raw is None:
        if required:
            raise BadFrame(header, "missing (required header)")
        return None
    if not _INT.fullmatch(raw) or not low <= int(raw) <= _MAX_SEQ:
        raise BadFrame(header, f"must be an integer from {low} to {_MAX_SEQ}, got {raw[:32]!r}")
    return int(raw)


def chunk_item(flow: str, headers: Mapping[str, str], body: bytes, limit: int) -> list[Frame]:
    """Frame one item: a single ``item`` frame if it fits in ``limit`` bytes, else chunks.

    The item's own ``headers`` ride on the ``item`` frame or on the first chunk; the first
    chunk also declares the body's size and SHA-256, so that the receiver can refuse an item
    too large before buffering it and verify the reassembled body. Frames are numbered 0:
    the sender numbers them as it sends them.

    Args:
        flow: The flow id.
        headers: The item's own headers (its ACL envelope, or its ``content-type``).
        body: The item's body.
        limit: The largest frame in bytes, headers included (`aclbus.wire.encoded_size`).

    Raises:
        MessageTooLarge: The item's headers alone leave no room for a body in one frame.
    """
    whole = Frame(flow, FrameKind.ITEM, 0, body, headers)
    frame_headers, _ = encode_frame(whole)
    if encoded_size({**frame_headers, FLOW_SEQ: _WIDEST[FLOW_SEQ]}, body) <= limit:
        return [whole]
    base = {FLOW_ID: flow, FLOW_KIND: FrameKind.CHUNK.value, **_WIDEST}
    first_room = limit - encoded_size({**base, FLOW_SHA256: "0" * 64, **headers}, b"")
    room = limit - encoded_size(base, b"")
    if first_room < 1 or room < 1:
        raise MessageTooLarge(
            encoded_size({**base, **headers}, b""), limit, "a stream item's headers"
        )
    rest = max(0, len(body) - first_room)
    parts = 1 + math.ceil(rest / room)
    if parts > _MAX_PARTS:
        raise MessageTooLarge(len(body), _MAX_PARTS * room, "a stream item")
    digest = hashlib.sha256(body).hexdigest()
    view = memoryview(body)
    frames = [
        Frame(
            flow,
            FrameKind.CHUNK,
            0,
            bytes(view[:first_room]),
            headers,
            part=1,
            parts=parts,
            size=len(body),
            sha256=digest,
        )
    ]
    for i in range(1, parts):
        start = first_room + (i - 1) * room
        frames.append(
            Frame(
                flow, FrameKind.CHUNK, 0, bytes(view[start : start + room]), part=i + 1, parts=parts
            )
        )
    return frames


class Reassembly:
    """Puts the chunks of one item back together and verifies its size and checksum.

    Args:
        max_bytes: The largest item body accepted; a first chunk declaring more is refused
            before anything is buffered.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._first: Frame | None = None
        self._parts: list[bytes] = []
        self._size = 0

    @property
    def busy(self) -> bool:
        """Whether an item is half-way reassembled."""
        return self._first is not None

    def add(self, frame: Frame) -> tuple[Mapping[str, str], bytes] | None:
        """Take the next chunk; return the item's ``(headers, body)`` once it is whole.

        Raises:
            StreamBroken: A chunk out of order, an item over ``max_bytes``, more bytes than
                declared, or a body whose size or SHA-256 is not the declared one.
        """
        first = self._first
        expected = 1 if first is None else len(self._parts) + 1
        if frame.part != expected or (first is not None and frame.parts != first.parts):
            raise StreamBroken(
                f"stream {frame.flow}: chunk {frame.part}/{frame.parts} arrived where chunk "
                f"{expected} of {first.parts if first else '?'} was due"
            )
        if first is None:
            assert frame.size is not None
            if frame.size > self.max_bytes:
                raise StreamBroken(
                    f"stream {frame.flow}: an item of {frame.size} bytes is over the limit of "
                    f"{self.max_bytes} bytes"
                )
            self._first = first = frame
        assert first.size is not None
        self._size += len(frame.body)
        if self._size > first.size:
            raise StreamBroken(
                f"stream {frame.flow}: the chunks hold more than the {first.size} bytes declared"
            )
        self._parts.append(frame.body)
        if frame.part != first.parts:
            return None
        body = b"".join(self._parts)
        self._first, self._parts, self._size = None, [], 0
        if len(body) != first.size:
            raise StreamBroken(
                f"stream {frame.flow}: the item has {len(body)} bytes, {first.size} were declared"
            )
        if hashlib.sha256(body).hexdigest() != first.sha256:
            raise StreamBroken(
                f"stream {frame.flow}: the reassembled item fails its SHA-256 checksum (corrupt)"
            )
        return first.headers, body


@dataclass(frozen=True, slots=True)
class OpenRequest:
    """What the opening message of a stream asks for (read by `parse_open`).

    Attributes:
        flow: The flow id.
        mode: ``pull`` (the opener receives the items) or ``push`` (the opener sends them).
        window: Frames the sender may have unacknowledged.
        idle: Seconds of silence after which each side gives the other up.
    """

    flow: str
    mode: str
    window: int
    idle: float


def open_headers(flow: str, mode: str, window: int, idle: float) -> dict[str, str]:
    """The application headers of a message that opens a stream."""
    return {FLOW_OPEN: mode, FLOW_ID: flow, FLOW_WINDOW: str(window), FLOW_IDLE: f"{idle:.6f}"}


def accept_headers(flow: str, window: int) -> dict[str, str]:
    """The application headers of the reply that accepts a stream."""
    return {FLOW_ACCEPT: flow, FLOW_WINDOW: str(window)}


def parse_open(headers: Mapping[str, str]) -> OpenRequest | None:
    """The stream a message opens, from its application headers; None if it opens none.

    Raises:
        BadFrame: It opens a stream, but with a malformed id, mode, window or idle timeout.
    """
    mode = headers.get(FLOW_OPEN)
    if mode is None:
        return None
    if mode not in ("pull", "push"):
        raise BadFrame(FLOW_OPEN, f"must be 'pull' or 'push', got {mode[:32]!r}")
    flow = _required(dict(headers), FLOW_ID)
    try:
        validate_id(flow, "flow id")
    except InvalidIdentifier as exc:
        raise BadFrame(FLOW_ID, str(exc)) from None
    window = _int(dict(headers), FLOW_WINDOW, low=1, required=True)
    assert window is not None
    if window > MAX_WINDOW:
        raise BadFrame(FLOW_WINDOW, f"must be at most {MAX_WINDOW}, got {window}")
    raw = _required(dict(headers), FLOW_IDLE)
    if not _IDLE.fullmatch(raw) or not float(raw) > 0:
        raise BadFrame(FLOW_IDLE, f"must be a decimal number of seconds > 0, got {raw[:32]!r}")
    return OpenRequest(flow, mode, window, float(raw))
