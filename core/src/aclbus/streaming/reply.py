"""Streamed replies: `request_stream` (the requester's end) and `serve` (the handler's end).

A handler written as an async generator streams what it yields to a requester that called
`Bus.request_stream`: each item becomes an ACL reply (``msg.reply(INFORM, payload=item)``, or
the `ACLMessage` it yielded), so conversation ids link every item to the request. Closing the
requester's iterator (``break``, ``aclose()``, cancelling its task) cancels the stream, and
the handler's generator is closed at once: its ``finally`` runs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import Any, Self

from aclbus import wire
from aclbus.acl import ACLMessage, Performative
from aclbus.backend import DeliveryMode
from aclbus.bus_core import BusCore
from aclbus.errors import ACLDecodeError, ConfigurationError
from aclbus.handling import Delivery, Route
from aclbus.middleware import Outgoing
from aclbus.redaction import redact
from aclbus.streaming._link import log, spawn
from aclbus.streaming.errors import BadFrame, StreamBroken, StreamError
from aclbus.streaming.flow import FLOW_ACCEPT, accept_headers, open_headers, parse_open
from aclbus.streaming.receiver import FlowReceiver
from aclbus.streaming.sender import FlowSender, check_timeout, check_window

__all__ = ["ReplyStream", "request_stream", "serve"]


class ReplyStream:
    """The replies to a streamed request, as an async iterator of `ACLMessage`.

    Nothing is sent until the first ``__anext__`` (or ``async with``). Use it in ``async for``
    and ``break`` when done, or as ``async with bus.request_stream(msg) as replies:`` to close
    it for sure; either way the producer is told to stop.

    A receiver whose handler does not stream answers with one ordinary reply (a result, a
    ``failure``, a ``not-understood``): the stream then yields that one reply.
    """

    def __init__(
        self, bus: BusCore, msg: ACLMessage, *, timeout: float | None, window: int | None
    ) -> None:
        if msg.receiver_id is None or msg.receivers:
            raise ConfigurationError("request_stream() needs a message with one receiver_id")
        self.bus = bus
        self.message = msg
        self.window = check_window(window)
        self.timeout = check_timeout(bus, timeout)
        self.flow = uuid.uuid4().hex
        self._receiver: FlowReceiver | None = None
        self._plain: ACLMessage | None = None
        self._state = "new"  # new, streaming, plain, done

    def __aiter__(self) -> Self:
        return self

    async def __aenter__(self) -> Self:
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _open(self) -> None:
        if self._state != "new":
            return
        bus = self.bus
        bus.check_started()
        msg = self.message
        assert msg.receiver_id is not None
        receiver = FlowReceiver(bus, self.flow, self.window, self.timeout)
        await receiver.open()  # before asking: the first items may come before the accept
        try:
            out = Outgoing(
                msg,
                bus.subjects.rpc(msg.receiver_id),
                DeliveryMode.AT_MOST_ONCE,
                headers=open_headers(self.flow, "pull", self.window, self.timeout),
                timeout=self.timeout,
            )
            async with bus.publish_pipeline.request_slots:
                reply = await bus.publish_pipeline.request(out)
        except BaseException:
            self._state = "done"
            await receiver.close()
            raise
        if reply.headers.get(FLOW_ACCEPT) == self.flow:
            self._receiver = receiver
            self._state = "streaming"
        else:
            await receiver.close()
            self._plain = reply
            self._state = "plain"

    async def __anext__(self) -> ACLMessage:
        await self._open()
        if self._state == "plain":
            self._state = "done"
            assert self._plain is not None
            return self._plain
        receiver = self._receiver
        if self._state != "streaming" or receiver is None:
            raise StopAsyncIteration
        try:
            got = await receiver.next_item()
            if got is None:
                raise StopAsyncIteration
            headers, body = got
            try:
                return wire.decode(headers, body, self.bus.codecs)
            except ACLDecodeError as exc:
                raise StreamBroken(f"stream {self.flow}: a reply is malformed: {exc}") from exc
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Stop the stream: the producer is told to stop (if it had not finished). Idempotent."""
        receiver, self._receiver = self._receiver, None
        self._state = "done"
        if receiver is None:
            return
        if not receiver.ended and receiver.failure is None and not receiver.closed:
            await receiver.cancel("the requester closed the stream")
        await receiver.close()

    def __del__(self) -> None:
        # A stream dropped without aclose (a `break` out of `async for`): stop the producer.
        receiver = getattr(self, "_receiver", None)  # None if __init__ raised
        if receiver is None or receiver.closed:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        spawn(_drop(receiver))


async def _drop(receiver: FlowReceiver) -> None:
    if not receiver.ended and receiver.failure is None:
        await receiver.cancel("the requester dropped the stream")
    await receiver.close()


def request_stream(
    bus: BusCore, msg: ACLMessage, *, timeout: float | None = None, window: int | None = None
) -> ReplyStream:
    """Send a request to ``msg.receiver_id`` and stream its replies (see `ReplyStream`).

    Args:
        bus: The bus.
        msg: The request, to one receiver.
        timeout: Idle timeout in seconds, each way: no reply (or sign of life) from the
            producer for that long raises `StreamTimeout` (default ``settings.request_timeout``).
        window: Replies the producer may have unacknowledged (default 16): a requester that
            does not read holds the producer back.

    Raises:
        ConfigurationError: The message does not have exactly one receiver, or a bad
            ``timeout`` or ``window`` (at once).

    The iterator raises, when iterated: `NoResponders` (nobody serves the receiver, at once),
    `RequestTimeout` (the stream was not accepted in time), `StreamFailed` (the handler
    raised), `StreamBroken`, `StreamCancelled`, `StreamTimeout`.
    """
    return ReplyStream(bus, msg, timeout=timeout, window=window)


async def serve(bus: BusCore, route: Route, delivery: Delivery) -> None:
    """Run an async generator handler for a streamed request (`Bus._dispatch` calls it).

    The request is accepted, then each item the generator yields is sent as it is made, with
    credit-based flow control. A cancel from the requester (or its silence for the idle
    timeout) closes the generator at once. An exception in it reaches the requester as
    `StreamFailed`. A request not opened by `request_stream` is answered ``not-understood``.
    """
    msg = delivery.message
    received = delivery.received
    try:
        opened = parse_open(msg.headers)
    except BadFrame as exc:
        await bus.consume_pipeline.not_understood(delivery, str(exc))
        await delivery.ack()
        return
    if opened is None or opened.mode != "pull" or not received.reply:
        await bus.consume_pipeline.not_understood(
            delivery, "this handler streams its replies: call it with Bus.request_stream"
        )
        await delivery.ack()
        return
    sender = FlowSender(bus, opened.flow, opened.window, opened.idle)
    await sender.open()
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
        args = (msg, delivery) if route.takes_delivery else (msg,)
        pump = asyncio.get_running_loop().create_task(
            _pump(bus, sender, route.func(*args), msg, delivery.agent)
        )
        # A cancel or the requester's silence stops the generator where it waits, at once.
        sender.on_failure = lambda _exc: _stop(pump)
        await asyncio.wait({pump})
    finally:
        await sender.close()


def _stop(pump: asyncio.Task[None]) -> None:
    pump.cancel()


async def _pump(
    bus: BusCore, sender: FlowSender, gen: AsyncGenerator[Any, None], msg: ACLMessage, agent: str
) -> None:
    try:
        async for item in gen:
            reply = (
                item
                if isinstance(item, ACLMessage)
                else msg.reply(Performative.INFORM, payload=item, sender_id=agent)
            )
            headers, body = wire.encode(reply, bus.codecs)
            await sender.send_item(headers, body)
        await sender.end()
    except StreamError:
        pass  # the flow is broken or cancelled: the other end knows, nothing more to send
    except Exception as exc:
        log.warning(
            "agent %s: a streaming handler failed: %s: %s",
            agent,
            type(exc).__name__,
            redact(str(exc)),
        )
        await sender.error(exc)
    finally:
        await gen.aclose()
