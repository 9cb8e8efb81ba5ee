"""The receiving end of a flow (`FlowReceiver`) and `on_stream`, which takes pushed items."""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from aclbus import wire
from aclbus.acl import ACLMessage, Performative
from aclbus.backend import DeliveryMode
from aclbus.bus_core import BusCore
from aclbus.codec import CodecRegistry
from aclbus.errors import ACLDecodeError
from aclbus.handling import Delivery, Handler
from aclbus.middleware import Outgoing
from aclbus.redaction import redact
from aclbus.streaming._link import Link, frame_limit, log
from aclbus.streaming.errors import BadFrame, StreamBroken, StreamError, StreamFailed
from aclbus.streaming.flow import (
    FLOW_OPEN,
    OCTET_STREAM,
    Frame,
    FrameKind,
    Reassembly,
    accept_headers,
    parse_open,
)

__all__ = [
    "DEFAULT_MAX_ITEM_BYTES",
    "FlowReceiver",
    "StreamTarget",
    "decode_item",
    "on_stream",
    "serve_push",
]

DEFAULT_MAX_ITEM_BYTES = 64 << 20
"""The largest item (its body) a receiver reassembles from chunks: 64 MiB."""

F = TypeVar("F", bound=Callable[..., Any])
H = TypeVar("H", bound=Handler)


class StreamTarget(Protocol):
    """What `on_stream` needs of an agent (an `aclbus.Agent`): its bus, and `Agent.on`."""

    @property
    def bus(self) -> BusCore:
        """The bus the agent lives on."""
        ...

    def on(
        self,
        *performatives: Performative | str,
        message_type: str | None = None,
        protocol: str | None = None,
        topic: str | None = None,
        headers: Mapping[str, str] | None = None,
        where: Callable[[ACLMessage], bool] | None = None,
        payload: type[BaseModel] | None = None,
    ) -> Callable[[H], H]:
        """Register the decorated coroutine function as a handler (`aclbus.Agent.on`)."""
        ...


class FlowReceiver(Link):
    """The receiving end: items in on ``data``, credit and cancels out on ``ctl``.

    Frames wait in a queue of at most ``window`` until the reader takes them (`next_item`);
    credit goes back as it does, so the memory held is bounded by the window plus one item
    being reassembled (at most ``max_item_bytes``). A sender that overruns the window breaks
    the flow.
    """

    def __init__(
        self,
        bus: BusCore,
        flow: str,
        window: int,
        idle: float,
        *,
        max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES,
    ) -> None:
        super().__init__(bus, flow, "ctl", "data", idle)
        self.window = window
        self.items = 0
        self.ended = False
        self._queue: deque[Frame] = deque()
        self._received = 0
        self._consumed = 0
        self._reported = 0
        self._reassembly = Reassembly(max_item_bytes)

    @property
    def queued(self) -> int:
        """Frames received and not yet taken by the reader."""
        return len(self._queue)

    def hear(self, frame: Frame) -> None:
        """Queue an item, a chunk, the end or the sender's error, in order."""
        if frame.credited:
            self._received += 1
            if self._received - self._consumed > self.window:
                raise StreamBroken(
                    f"stream {self.flow}: the sender overran its window of {self.window} frames"
                )
        elif frame.kind not in (FrameKind.END, FrameKind.ERROR):
            raise StreamBroken(f"stream {self.flow}: a sender does not send {frame.kind} frames")
        self._queue.append(frame)
        self._wake()

    async def next_item(self) -> tuple[Mapping[str, str], bytes] | None:
        """The next whole item as ``(headers, body)``; None once the sender ended the flow.

        The items that arrived before the flow failed are returned first; then the failure
        is raised.

        Raises:
            StreamFailed: The sender's code raised.
            StreamBroken: A frame was lost, repeated or corrupt.
            StreamCancelled: The sender cancelled.
            StreamTimeout: The sender went silent for the idle timeout.
        """
        while True:
            # Frames that came before a failure are good: they are read first.
            if self.failure is not None and not self._queue:
                raise self.failure
            if self.ended:
                return None
            if not self._queue:
                if await self._credit():  # all taken: the sender may be waiting for this
                    continue  # frames may have come while it was sent
                await self.changed()
                continue
            frame = self._queue.popleft()
            try:
                got = await self._take(frame)
            except StreamError as exc:
                self.fail(exc, tell=not isinstance(exc, StreamFailed))
                raise
            if got is not None:
                return got
            if self.ended:
                return None

    async def _take(self, frame: Frame) -> tuple[Mapping[str, str], bytes] | None:
        if frame.kind is FrameKind.END:
            if self._reassembly.busy or frame.count != self.items:
                raise StreamBroken(
                    f"stream {self.flow}: the sender sent {frame.count} items, "
                    f"{self.items} arrived whole"
                )
            self.ended = True
            return None
        if frame.kind is FrameKind.ERROR:
            detail = redact(frame.body.decode(errors="replace"))
            raise StreamFailed(frame.error or "Exception", detail)
        self._consumed += 1
        if self._consumed - self._reported >= max(1, self.window // 2):
            await self._credit()
        if frame.kind is FrameKind.ITEM:
            if self._reassembly.busy:
                raise StreamBroken(f"stream {self.flow}: an item arrived inside a chunked one")
            self.items += 1
            return frame.headers, frame.body
        got = self._reassembly.add(frame)
        if got is not None:
            self.items += 1
        return got

    async def _credit(self) -> bool:
        """Return the credit not yet returned; True if there was some to send."""
        if self._consumed > self._reported and self.failure is None and not self.closed:
            self._reported = self._consumed
            await self.send(Frame(self.flow, FrameKind.CREDIT, credit=self._consumed))
            return True
        return False

    async def payloads(self, codecs: CodecRegistry) -> AsyncIterator[Any]:
        """Yield the decoded payload of each item until the sender ends the flow."""
        while True:
            got = await self.next_item()
            if got is None:
                return
            yield decode_item(self.flow, *got, codecs)

    async def finish(self, result: ACLMessage | None) -> None:
        """Tell the sender the handler is done (push flows), with its reply if any."""
        headers: Mapping[str, str] = {}
        body = b""
        if result is not None:
            headers, body = wire.encode(result, self.bus.codecs, max_bytes=frame_limit(self.bus))
        await self.send(Frame(self.flow, FrameKind.DONE, body=body, headers=headers))

    async def send_error(self, exc: BaseException) -> None:
        """Tell the sender that the handler raised ``exc`` (its text redacted)."""
        try:
            await self.send(
                Frame(
                    self.flow,
                    FrameKind.ERROR,
                    body=redact(str(exc)).encode(),
                    error=type(exc).__name__,
                )
            )
        except Exception as send_exc:
            log.debug("stream %s: could not send the error: %s", self.flow, send_exc)


def decode_item(flow: str, headers: Mapping[str, str], body: bytes, codecs: CodecRegistry) -> Any:
    """The payload of a pushed item: raw bytes, or decoded by the codec of its content type.

    Raises:
        StreamBroken: The body is not valid for its content type.
    """
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    if content_type == OCTET_STREAM:
        return body
    try:
        return codecs.get(content_type).decode(body)
    except ACLDecodeError as exc:
        raise StreamBroken(f"stream {flow}: an item cannot be decoded: {exc}") from exc


def on_stream(
    agent: StreamTarget,
    *performatives: Performative | str,
    message_type: str | None = None,
    **filters: Any,
) -> Callable[[F], F]:
    """Register the decorated function as the agent's handler of pushed streams.

    The handler is ``async def handler(msg, chunks) -> ACLMessage | None``: ``msg`` is the
    message that opened the stream (`send_stream`), ``chunks`` an async iterator of the items'
    payloads (bytes items as bytes), which raises a `StreamError` if the stream breaks. What
    the handler returns reaches the sender in its `StreamReport`; if it raises, the sender
    gets `StreamFailed`. A handler that returns before the last item ends the stream.

    Args:
        agent: The agent.
        *performatives: Take only streams opened with these acts.
        message_type: Take only streams opened with this message type (or pattern).
        **filters: Other filters of `Agent.on` (``protocol``, ``topic``, ``headers``, ``where``).

    Raises:
        TypeError: The handler is not a coroutine function of two parameters.
    """
    headers = dict(filters.pop("headers", None) or {})
    headers[FLOW_OPEN] = "push"

    def decorate(func: F) -> F:
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"stream handler {func!r} must be an async function (async def)")
        params = [
            p
            for p in inspect.signature(func).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if len(params) != 2:
            raise TypeError(f"stream handler {func.__qualname__} must take (msg, chunks)")

        async def open_stream(msg: ACLMessage, delivery: Delivery) -> None:
            await serve_push(agent.bus, func, delivery)

        open_stream.__qualname__ = func.__qualname__
        agent.on(*performatives, message_type=message_type, headers=headers, **filters)(open_stream)
        return func

    return decorate


async def serve_push(bus: BusCore, func: Callable[..., Any], delivery: Delivery) -> None:
    """Accept a pushed stream and run ``func(msg, chunks)`` on it (what `on_stream` routes to).

    Raises:
        Exception: What the handler raised (the sender has been told), so that the bus
            counts and logs the failure.
    """
    msg = delivery.message
    received = delivery.received
    try:
        opened = parse_open(msg.headers)
    except BadFrame as exc:
        await bus.consume_pipeline.not_understood(delivery, str(exc))
        return
    if opened is None or opened.mode != "push" or not received.reply:
        await bus.consume_pipeline.not_understood(
            delivery, "a stream handler takes streams opened with Bus.send_stream"
        )
        return
    receiver = FlowReceiver(bus, opened.flow, opened.window, opened.idle)
    await receiver.open()
    try:
        accept = msg.reply(Performative.AGREE, sender_id=delivery.agent)
        await bus.publish_pipeline.publish(
            Outgoing(
                accept,
                received.reply,
                DeliveryMode.AT_MOST_ONCE,
                headers=accept_headers(opened.flow, opened.window),
            )
        )
        try:
            result = await func(msg, receiver.payloads(bus.codecs))
            if result is not None and not isinstance(result, ACLMessage):
                raise TypeError(
                    f"stream handler {getattr(func, '__qualname__', func)!r} returned "
                    f"{type(result).__name__}, not an ACLMessage or None"
                )
        except Exception as exc:
            if receiver.failure is None:
                await receiver.send_error(exc)
            raise
        await receiver.finish(result)
    finally:
        await receiver.close()
