"""One end of a flow: its subjects, sequence numbers, liveness watchdog and failure state.

`FlowSender` and `FlowReceiver` build on `Link`. Private: the public surface is in
`aclbus.streaming`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from aclbus.backend import DeliveryMode, Received, Subscription, SubscriptionSpec
from aclbus.bus_core import BusCore
from aclbus.clock import SystemClock, Timer, TimerClock
from aclbus.redaction import redact
from aclbus.streaming.errors import StreamBroken, StreamCancelled, StreamError, StreamTimeout
from aclbus.streaming.flow import Frame, FrameKind, decode_frame, encode_frame

__all__ = ["DEFAULT_WINDOW", "Link", "clock_of", "frame_limit", "spawn"]

log = logging.getLogger("aclbus.streaming")

DEFAULT_WINDOW = 16
"""Frames a sender may have unacknowledged unless the stream says otherwise."""

_background: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Run ``coro`` in the background, keeping a reference until it is done."""
    task = asyncio.get_running_loop().create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


def clock_of(bus: BusCore) -> TimerClock:
    """The clock a bus' timeouts run on: its backend's (a test's manual one), or real time."""
    clock = bus.backend.clock
    return clock if isinstance(clock, TimerClock) else SystemClock()


def frame_limit(bus: BusCore) -> int:
    """The largest frame a bus may send: its ``max_message_bytes``, within the broker's limit."""
    limit = bus.settings.max_message_bytes
    broker = bus.backend.max_payload
    return min(limit, broker) if broker else limit


class Link:
    """One end of a flow: sends on one subject, hears the other end on another.

    Frames it sends are numbered from 1; frames it hears must be numbered 1, 2, 3, ...: a gap
    or a repeat breaks the flow (`StreamBroken`). Silence from the other end for ``idle``
    seconds breaks it too (`StreamTimeout`); to be heard, the link sends a ``ping`` when it
    has sent nothing for a third of that.

    Args:
        bus: The bus it runs on.
        flow: The flow id.
        send_part: The subject part it sends on (``data`` or ``ctl``).
        hear_part: The subject part it hears on.
        idle: The idle timeout, in seconds.
    """

    def __init__(
        self, bus: BusCore, flow: str, send_part: str, hear_part: str, idle: float
    ) -> None:
        self.bus = bus
        self.flow = flow
        self.idle = idle
        self.out_subject = bus.subjects.flow(flow, send_part)
        self.in_subject = bus.subjects.flow(flow, hear_part)
        self.clock = clock_of(bus)
        self.failure: StreamError | None = None
        self.closed = False
        self.on_failure: Callable[[StreamError], None] | None = None
        self.frames_sent = 0
        self.bytes_sent = 0
        self._out_seq = 0
        self._in_seq = 0
        self._last_heard = self.clock.now()
        self._last_sent = self._last_heard
        self._sub: Subscription | None = None
        self._timer: Timer | None = None
        self._changed = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Start hearing the other end, and start the watchdog."""
        self._last_heard = self._last_sent = self.clock.now()
        self._sub = await self.bus.backend.subscribe(
            SubscriptionSpec(self.in_subject, mode=DeliveryMode.AT_MOST_ONCE), self._on_delivery
        )
        self._arm()

    async def close(self) -> None:
        """Stop hearing and stop the watchdog. Idempotent."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        sub, self._sub = self._sub, None
        if sub is not None and sub.active:
            try:
                await sub.unsubscribe()
            except Exception as exc:  # the backend may be closing already
                log.debug("stream %s: unsubscribe failed: %s", self.flow, exc)
        self._wake()

    def _arm(self) -> None:
        if not self.closed:
            self._timer = self.clock.call_later(self.idle / 3, self._tick)

    def _tick(self) -> None:
        if self.closed or self.failure is not None:
            return
        now = self.clock.now()
        if now - self._last_heard >= self.idle:
            self.fail(StreamTimeout(self.flow, self.idle))
            return
        if now - self._last_sent >= self.idle / 3:
            spawn(self._ping())
        self._arm()

    async def _ping(self) -> None:
        try:
            await self.send(Frame(self.flow, FrameKind.PING))
        except Exception as exc:  # the watchdog notices if the other end stays silent
            log.debug("stream %s: ping failed: %s", self.flow, exc)

    # -- sending --------------------------------------------------------------------------

    async def send(self, frame: Frame) -> None:
        """Number ``frame`` and publish it to the other end."""
        self._out_seq += 1
        headers, body = encode_frame(replace(frame, seq=self._out_seq))
        await self.bus.backend.publish(
            self.out_subject, headers, body, mode=DeliveryMode.AT_MOST_ONCE
        )
        self._last_sent = self.clock.now()
        self.frames_sent += 1
        self.bytes_sent += len(body)

    async def cancel(self, reason: str) -> None:
        """Tell the other end to stop (best effort: it times out if this is lost)."""
        try:
            await self.send(Frame(self.flow, FrameKind.CANCEL, body=redact(reason).encode()))
        except Exception as exc:
            log.debug("stream %s: could not send the cancel: %s", self.flow, exc)

    # -- hearing --------------------------------------------------------------------------

    async def _on_delivery(self, received: Received) -> None:
        if self.closed or self.failure is not None:
            return
        try:
            frame = decode_frame(received.headers, received.body)
            if frame.flow != self.flow:
                raise StreamBroken(f"stream {self.flow}: a frame of stream {frame.flow} arrived")
            if frame.seq != self._in_seq + 1:
                what = "repeated" if frame.seq <= self._in_seq else "missing"
                raise StreamBroken(
                    f"stream {self.flow}: frame {frame.seq} arrived where {self._in_seq + 1} "
                    f"was due (frames {what}; streams are at_most_once)"
                )
            self._in_seq = frame.seq
            self._last_heard = self.clock.now()
            if frame.kind is FrameKind.CANCEL:
                reason = redact(frame.body.decode(errors="replace"))
                self.fail(StreamCancelled(f"stream {self.flow} cancelled: {reason}"), tell=False)
            elif frame.kind is not FrameKind.PING:
                self.hear(frame)
        except StreamError as exc:
            log.warning("%s", exc)
            self.fail(exc)
        except Exception as exc:  # never let a frame kill the subscription
            log.exception("stream %s: a frame could not be handled", self.flow)
            self.fail(StreamBroken(f"stream {self.flow}: {type(exc).__name__}: {redact(str(exc))}"))

    def hear(self, frame: Frame) -> None:
        """Take a frame of the other end (neither ``ping`` nor ``cancel``); subclasses do."""
        raise NotImplementedError

    def fail(self, exc: StreamError, *, tell: bool = True) -> None:
        """Break the flow with ``exc`` (the first failure wins), telling the other end."""
        if self.failure is not None or self.closed:
            return
        self.failure = exc
        if tell:
            spawn(self.cancel(str(exc)))
        if self.on_failure is not None:
            self.on_failure(exc)
        self._wake()

    # -- waiting --------------------------------------------------------------------------

    def _wake(self) -> None:
        self._changed.set()

    async def changed(self) -> None:
        """Wait for the next change: a frame heard, a failure, the close.

        Raises:
            StreamCancelled: The link is closed.
        """
        if self.closed:
            raise StreamCancelled(f"stream {self.flow} is closed")
        self._changed.clear()
        await self._changed.wait()

    async def wait_until(self, ready: Callable[[], bool]) -> None:
        """Wait until ``ready()`` or the flow fails or closes; raise the failure if it did.

        The wait ends for sure: a silent other end fails the flow after ``idle`` seconds.
        """
        while True:
            if self.failure is not None:
                raise self.failure
            if ready():
                return
            if self.closed:
                raise StreamCancelled(f"stream {self.flow} is closed")
            self._changed.clear()
            await self._changed.wait()
