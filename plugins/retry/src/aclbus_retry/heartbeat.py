"""Heartbeats: ``in_progress`` sent for deliveries whose handlers run long.

One timer per heartbeat interval serves every delivery in flight with that interval: it ticks
every half interval while any is in flight, and each tick beats the deliveries not beaten (or
started) within the last half interval. So no delivery goes longer than one interval without
a heartbeat, and a message costs a dict insert and delete — no task, no timer of its own. A
task is made only to send a heartbeat, for a handler that has run half an interval already.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol, cast

from aclbus.backend import Backend
from aclbus.dlq import redact
from aclbus.middleware import Delivery

__all__ = ["Cancellable", "Heartbeats", "Timebase", "timebase_for"]

log = logging.getLogger("aclbus.retry")

_EARLY = 0.99
"""A tick beats a delivery that waited at least this share of half an interval (float slack)."""


class Cancellable(Protocol):
    """A scheduled callback that can be called off (`asyncio.TimerHandle` is one)."""

    def cancel(self) -> None:
        """Do not run the callback."""


class Timebase(Protocol):
    """The time heartbeats are measured in (the memory engine's `Clock` is one)."""

    def now(self) -> float:
        """Monotonic seconds."""

    def call_later(self, delay: float, callback: Callable[[], object]) -> Cancellable:
        """Run ``callback`` in the event loop after ``delay`` seconds."""


class _LoopTime:
    """The running event loop's time and timers."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def call_later(self, delay: float, callback: Callable[[], object]) -> Cancellable:
        return asyncio.get_running_loop().call_later(delay, callback)


def timebase_for(backend: Backend) -> Timebase:
    """The time to measure heartbeat intervals in: the broker's own.

    A backend that runs on a clock of its own (the memory engine's ``clock``, a `ManualClock`
    in tests) measures ``ack_wait`` on that clock, so heartbeats must too; any other backend
    lives on the event loop's time.
    """
    clock = getattr(backend, "clock", None)
    if callable(getattr(clock, "now", None)) and callable(getattr(clock, "call_later", None)):
        return cast(Timebase, clock)
    return _LoopTime()


class _Group:
    """The deliveries in flight with one heartbeat interval, and the timer that beats them."""

    __slots__ = ("_half", "_time", "_timer", "inflight", "tasks")

    def __init__(self, interval: float, time: Timebase, tasks: set[asyncio.Task[None]]) -> None:
        self._half = interval / 2
        self._time = time
        self._timer: Cancellable | None = None
        self.inflight: dict[Delivery, float] = {}
        """Each delivery in flight, with when it started or was last beaten."""
        self.tasks = tasks

    def add(self, delivery: Delivery) -> None:
        self.inflight[delivery] = self._time.now()
        if self._timer is None:
            self._timer = self._time.call_later(self._half, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if not self.inflight:
            return  # idle: the next `add` starts the timer again
        now = self._time.now()
        due = now - self._half * _EARLY
        for delivery, last in list(self.inflight.items()):
            if last <= due and delivery.settled is None:
                self.inflight[delivery] = now
                task = asyncio.get_running_loop().create_task(_send(delivery))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        self._timer = self._time.call_later(self._half, self._tick)


async def _send(delivery: Delivery) -> None:
    try:
        await delivery.in_progress()
    except Exception as exc:  # the next tick tries again; a redelivery is the worst case
        log.warning(
            "agent %s: could not send in_progress for message %s: %s: %s",
            delivery.agent,
            delivery.message.message_id,
            type(exc).__name__,
            redact(str(exc)),
        )


class Heartbeats:
    """Keeps the broker from redelivering messages whose handlers are still running.

    Args:
        time: Where time and timers come from (see `timebase_for`).

    Example:
        ```python
        beats = Heartbeats(timebase_for(bus.backend))
        beats.start(delivery, 10.0)
        try:
            await handle(delivery)
        finally:
            beats.stop(delivery, 10.0)
        ```
    """

    def __init__(self, time: Timebase) -> None:
        self._time = time
        self._groups: dict[float, _Group] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, delivery: Delivery, interval: float) -> None:
        """Send ``in_progress`` for ``delivery`` at least every ``interval`` seconds."""
        group = self._groups.get(interval)
        if group is None:
            group = self._groups[interval] = _Group(interval, self._time, self._tasks)
        group.add(delivery)

    def stop(self, delivery: Delivery, interval: float) -> None:
        """Send no more heartbeats for ``delivery`` (started with ``interval``)."""
        group = self._groups.get(interval)
        if group is not None:
            group.inflight.pop(delivery, None)

    @property
    def inflight(self) -> int:
        """How many deliveries are being kept alive."""
        return sum(len(group.inflight) for group in self._groups.values())
