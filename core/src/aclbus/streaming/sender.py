"""The sending end of a flow (`FlowSender`) and `send_stream`, which pushes items to an agent."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aclbus import wire
from aclbus.acl import ACLMessage
from aclbus.backend import DeliveryMode
from aclbus.bus_core import BusCore
from aclbus.codec import CodecRegistry
from aclbus.errors import ACLDecodeError, ConfigurationError
from aclbus.middleware import Outgoing
from aclbus.redaction import redact
from aclbus.streaming._link import DEFAULT_WINDOW, Link, frame_limit, log
from aclbus.streaming.errors import StreamBroken, StreamFailed, StreamRefused
from aclbus.streaming.flow import (
    FLOW_ACCEPT,
    FLOW_WINDOW,
    MAX_WINDOW,
    OCTET_STREAM,
    Frame,
    FrameKind,
    chunk_item,
    open_headers,
)

__all__ = ["FlowSender", "StreamReport", "check_window", "encode_item", "send_stream"]


class FlowSender(Link):
    """The sending end: items out on ``data``, credit and cancels in on ``ctl``.

    At most ``window`` ``item``/``chunk`` frames are out unacknowledged: `send_item` waits for
    credit, so a receiver that does not read stalls its sender and the memory on both sides
    stays bounded.
    """

    def __init__(self, bus: BusCore, flow: str, window: int, idle: float) -> None:
        super().__init__(bus, flow, "data", "ctl", idle)
        self.window = window
        self.items = 0
        self.chunks = 0
        self.done: Frame | None = None
        """The receiver's ``done`` frame (push flows): its handler finished."""
        self._credited_sent = 0
        self._acked = 0
        self._limit = frame_limit(bus)

    def hear(self, frame: Frame) -> None:
        """Take credit, or the receiver's end (``done``, ``error``)."""
        if frame.kind is FrameKind.CREDIT:
            assert frame.credit is not None
            if frame.credit > self._credited_sent:
                raise StreamBroken(
                    f"stream {self.flow}: credit for {frame.credit} frames, only "
                    f"{self._credited_sent} were sent"
                )
            self._acked = max(self._acked, frame.credit)
        elif frame.kind is FrameKind.DONE:
            self.done = frame
        elif frame.kind is FrameKind.ERROR:
            detail = redact(frame.body.decode(errors="replace"))
            self.fail(StreamFailed(frame.error or "Exception", detail), tell=False)
            return
        else:
            raise StreamBroken(f"stream {self.flow}: a receiver does not send {frame.kind} frames")
        self._wake()

    @property
    def in_flight(self) -> int:
        """Frames sent and not yet acknowledged by the receiver."""
        return self._credited_sent - self._acked

    async def send_item(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Send one item (chunked if it is too large for one frame), waiting for credit.

        Returns:
            False if the receiver finished first (push flows): nothing more is wanted.

        Raises:
            StreamError: The flow failed (cancelled, timed out, broken) before it was sent.
            MessageTooLarge: The item's headers alone do not fit in one frame.
        """
        frames = chunk_item(self.flow, headers, body, self._limit)
        for frame in frames:
            await self.wait_until(lambda: self.done is not None or self.in_flight < self.window)
            if self.done is not None:
                return False
            self._credited_sent += 1
            await self.send(frame)
        self.items += 1
        if len(frames) > 1:
            self.chunks += len(frames)
        return True

    async def end(self) -> None:
        """Tell the receiver that no item follows (with their count, to check nothing is lost)."""
        await self.send(Frame(self.flow, FrameKind.END, count=self.items))

    async def error(self, exc: BaseException) -> None:
        """Tell the receiver that the producer raised ``exc`` (its text redacted)."""
        body = redact(f"{exc}").encode()
        try:
            await self.send(Frame(self.flow, FrameKind.ERROR, body=body, error=type(exc).__name__))
        except Exception as send_exc:
            log.debug("stream %s: could not send the error: %s", self.flow, send_exc)


@dataclass(frozen=True, slots=True)
class StreamReport:
    """What `send_stream` did.

    Attributes:
        flow: The flow id.
        items: Items sent.
        chunks: Frames of the items that had to be chunked.
        frames: Frames sent in all (pings and the end included).
        bytes: Body bytes sent.
        complete: False if the receiving handler returned before every item was sent.
        reply: What the receiving handler returned, if anything.
    """

    flow: str
    items: int
    chunks: int
    frames: int
    bytes: int
    complete: bool
    reply: ACLMessage | None


def check_window(window: int | None) -> int:
    """A window argument, checked; None gives `DEFAULT_WINDOW`.

    Raises:
        ConfigurationError: Not an integer from 1 to `MAX_WINDOW`.
    """
    if window is None:
        return DEFAULT_WINDOW
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= MAX_WINDOW:
        raise ConfigurationError(f"a stream's window must be an int from 1 to {MAX_WINDOW}")
    return window


def check_timeout(bus: BusCore, timeout: float | None) -> float:
    """An idle timeout argument, checked; None gives ``settings.request_timeout``.

    Raises:
        ConfigurationError: Not a number of seconds above 0.
    """
    if timeout is None:
        return bus.settings.request_timeout
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ConfigurationError(f"a stream's timeout must be seconds > 0, got {timeout!r}")
    return float(timeout)


def encode_item(item: Any, codecs: CodecRegistry) -> tuple[dict[str, str], bytes]:
    """The headers and body of a pushed item: bytes as they are, else the default codec's."""
    if isinstance(item, bytes | bytearray | memoryview):
        return {"content-type": OCTET_STREAM}, bytes(item)
    codec = codecs.default
    return {"content-type": codec.content_type}, codec.encode(item)


async def send_stream(
    bus: BusCore,
    msg: ACLMessage,
    items: AsyncIterable[Any] | Iterable[Any],
    *,
    window: int | None = None,
    timeout: float | None = None,
) -> StreamReport:
    """Push ``items`` to the agent ``msg.receiver_id``, which takes them with `on_stream`.

    ``msg`` opens the stream: it reaches the receiver's handler with the items. Items are
    payloads (any value the codec encodes) or bytes (sent raw); one larger than a message is
    chunked and reassembled. At most ``window`` frames are unacknowledged: a slow receiver
    slows the sender down, and ``items`` is not read ahead of it.

    Args:
        bus: The bus.
        msg: The opening message, to one receiver.
        items: The items, an iterable or an async iterable (closed when the stream ends).
        window: Frames unacknowledged at most (default 16).
        timeout: Idle timeout in seconds, each way (default ``settings.request_timeout``).

    Returns:
        What was sent, and the handler's reply.

    Raises:
        NoResponders: No agent serves ``msg.receiver_id`` (at once).
        StreamRefused: The receiver has no stream handler for ``msg``.
        StreamFailed: The receiving handler raised.
        StreamCancelled: The receiver cancelled the stream.
        StreamTimeout: The receiver went silent for ``timeout`` seconds.
    """
    if msg.receiver_id is None or msg.receivers:
        raise ConfigurationError("send_stream() needs a message with one receiver_id")
    window = check_window(window)
    idle = check_timeout(bus, timeout)
    bus.check_started()
    flow = uuid.uuid4().hex
    sender = FlowSender(bus, flow, window, idle)
    await sender.open()
    try:
        out = Outgoing(
            msg,
            bus.subjects.rpc(msg.receiver_id),
            DeliveryMode.AT_MOST_ONCE,
            headers=open_headers(flow, "push", window, idle),
            timeout=idle,
        )
        async with bus.publish_pipeline.request_slots:
            reply = await bus.publish_pipeline.request(out)
        if reply.headers.get(FLOW_ACCEPT) != flow:
            reason = reply.payload.get("reason") if isinstance(reply.payload, dict) else None
            raise StreamRefused(msg.receiver_id, reply.performative.value, str(reason or "-"))
        granted = reply.headers.get(FLOW_WINDOW, "")
        if granted.isdigit() and 1 <= int(granted) <= window:
            sender.window = int(granted)
        complete = await _pump(sender, items, bus.codecs)
        await sender.wait_until(lambda: sender.done is not None)
    except BaseException:
        if sender.failure is None and not sender.closed:
            await sender.cancel("the sender stopped")
        raise
    finally:
        await sender.close()
    assert sender.done is not None
    result = None
    if sender.done.headers:
        try:
            result = wire.decode(sender.done.headers, sender.done.body, bus.codecs)
        except ACLDecodeError as exc:
            raise StreamBroken(f"stream {flow}: the receiver's reply is malformed: {exc}") from exc
    return StreamReport(
        flow=flow,
        items=sender.items,
        chunks=sender.chunks,
        frames=sender.frames_sent,
        bytes=sender.bytes_sent,
        complete=complete,
        reply=result,
    )


async def _pump(
    sender: FlowSender, items: AsyncIterable[Any] | Iterable[Any], codecs: CodecRegistry
) -> bool:
    """Send every item then the end; False if the receiver finished before the last one."""
    source: AsyncIterator[Any] | None = None
    try:
        if isinstance(items, AsyncIterable):
            source = aiter(items)
            async for item in source:
                if not await _send_one(sender, item, codecs):
                    return False
        else:
            for item in items:
                if not await _send_one(sender, item, codecs):
                    return False
        if sender.done is not None:
            return False
        await sender.end()
        return True
    except Exception as exc:
        if sender.failure is None:
            await sender.error(exc)
        raise
    finally:
        close = getattr(source, "aclose", None)
        if close is not None:
            closing = close()
            if inspect.isawaitable(closing):
                await closing


async def _send_one(sender: FlowSender, item: Any, codecs: CodecRegistry) -> bool:
    headers, body = encode_item(item, codecs)
    return await sender.send_item(headers, body)
