"""Time for the memory engine: `SystemClock` (the event loop's) or `ManualClock` (a test's).

Every delay in the engine (ack timeouts, nack delays, TTLs, request timeouts, injected delays)
goes through a `Clock`, so a test that uses a `ManualClock` decides when time passes and runs
in no wall-clock time at all. An engine clock is an `aclbus.backend.Clock` (what
`Backend.clock` returns) that also schedules timers.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from aclbus import backend
from aclbus.errors import ConfigurationError

__all__ = ["Clock", "ManualClock", "SystemClock", "Timer"]


class Timer(Protocol):
    """A scheduled callback that can still be called off (`asyncio.TimerHandle` is one)."""

    def cancel(self) -> None:
        """Do not run the callback; harmless once it ran or was cancelled."""


class Clock(backend.Clock, Protocol):
    """Where the engine reads the time and schedules its timers.

    `aclbus.backend.Clock` (``now``: the time base of every deadline; ``wall``: timestamps
    such as `KVEntry.created`; ``sleep``), plus the timers.
    """

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback`` (in the event loop) once `now` reaches ``when``."""

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback`` (in the event loop) after ``delay`` seconds."""


class SystemClock(backend.SystemClock):
    """Real time (`aclbus.backend.SystemClock`) and the running event loop's timers."""

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """Schedule ``callback`` on the running loop for monotonic time ``when``."""
        # Convert through a delay: the loop's own time base need not be time.monotonic.
        return asyncio.get_running_loop().call_later(max(0.0, when - time.monotonic()), callback)

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Schedule ``callback`` on the running loop after ``delay`` seconds."""
        return asyncio.get_running_loop().call_later(max(0.0, delay), callback)


class _ManualTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


_DEFAULT_WALL_START = datetime(2025, 1, 1, tzinfo=UTC)


class ManualClock:
    """A clock that moves only when told: `advance` fires due timers in time order.

    Timers scheduled on it run inside `advance`, each at its own due time (`now` reads that
    time while it runs), and after each one the event loop gets to run what became ready, so
    a redelivery made due by the timer has reached its handler when `advance` returns.

    Args:
        start: The initial value of `now`.
        wall_start: The wall-clock time at ``start`` (default 2025-01-01T00:00:00Z).
        settle_rounds: At most how many loop turns to yield after each timer while the
            event loop still has ready callbacks (a bound against tasks that never rest).

    Example:
        ```python
        clock = ManualClock()
        backend = MemoryBackend(clock=clock)
        ...
        await clock.advance(30.0)  # ack_wait ran out: the redelivery has been handled
        ```
    """

    def __init__(
        self,
        start: float = 0.0,
        *,
        wall_start: datetime | None = None,
        settle_rounds: int = 10_000,
    ) -> None:
        self._start = start
        self._now = start
        self._wall_start = wall_start if wall_start is not None else _DEFAULT_WALL_START
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._order = itertools.count()
        self._settle_rounds = settle_rounds

    def now(self) -> float:
        """The clock's current reading, in seconds."""
        return self._now

    def wall(self) -> datetime:
        """``wall_start`` plus the time advanced so far."""
        return self._wall_start + timedelta(seconds=self._now - self._start)

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback`` when `advance` reaches ``when`` (at the next one, if already past)."""
        timer = _ManualTimer(when, callback)
        heapq.heappush(self._timers, (when, next(self._order), timer))
        return timer

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback`` once the clock has advanced ``delay`` seconds."""
        return self.call_at(self._now + max(0.0, delay), callback)

    async def sleep(self, seconds: float) -> None:
        """Wait until `advance` has moved the clock ``seconds`` further."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        timer = self.call_later(seconds, wake)
        try:
            await future
        finally:
            timer.cancel()

    @property
    def pending(self) -> int:
        """How many timers are scheduled and not cancelled."""
        return sum(1 for _, _, timer in self._timers if not timer.cancelled)

    def next_due(self) -> float | None:
        """When the earliest live timer is due, or None if there is none."""
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    async def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward, firing every timer due on the way, in order.

        Timers scheduled while advancing (a nack delay set by a handler) fire too if they
        fall due before the end. ``advance(0)`` only lets ready work run (see `settle`).

        Raises:
            ConfigurationError: ``seconds`` is negative: a monotonic clock does not go back.
        """
        if seconds < 0:
            raise ConfigurationError(f"a clock cannot go back: advance({seconds!r})")
        target = self._now + seconds
        await self.settle()
        while True:
            due = self.next_due()
            if due is None or due > target:
                break
            _, _, timer = heapq.heappop(self._timers)
            self._now = max(self._now, due)
            timer.cancelled = True  # fired: a later cancel() is a no-op, `pending` skips it
            timer.callback()
            await self.settle()
        self._now = target
        await self.settle()

    async def settle(self) -> None:
        """Yield to the event loop until no callback is ready (bounded by ``settle_rounds``).

        This lets woken tasks run (a handler that got a redelivery, a request that got its
        reply) without moving the clock.
        """
        loop = asyncio.get_running_loop()
        # CPython's loops keep their ready callbacks in `_ready`; other loops get a fixed
        # number of turns instead.
        ready = getattr(loop, "_ready", None)
        rounds = self._settle_rounds if ready is not None else min(self._settle_rounds, 50)
        for _ in range(rounds):
            await asyncio.sleep(0)
            if ready is not None and not ready:
                return
