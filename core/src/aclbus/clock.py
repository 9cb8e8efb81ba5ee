"""Clocks: the time a backend lives by, and the timers that follow it.

A backend's deadlines and timestamps follow its `Clock` (`aclbus.backend.Backend.clock`):
real time for a broker, the memory engine's own clock in tests (a `ManualClock` moves only
when the test advances it). Whatever must agree with those deadlines reads the time, and
schedules its timers, through that clock rather than `time` and the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "Timer", "TimerClock"]


@runtime_checkable
class Clock(Protocol):
    """The time a backend lives by: `Backend.clock`.

    Read the time through the backend's clock rather than `time` where it must agree with the
    backend's own deadlines and timestamps (a KV bucket's TTL, `KVEntry.created`, ack
    timeouts): on the memory engine under a `ManualClock` those move only when a test
    advances it. `SystemClock` is the real one; the memory engine's clocks satisfy this too.
    """

    def now(self) -> float:
        """Monotonic seconds: for measuring intervals and deadlines; the origin is arbitrary."""

    def wall(self) -> datetime:
        """The wall-clock time, timezone-aware UTC (``wall().timestamp()`` for epoch seconds)."""

    async def sleep(self, seconds: float) -> None:
        """Wait until ``seconds`` have passed on this clock."""


class SystemClock:
    """Real time: `time.monotonic`, `datetime.now` in UTC, `asyncio.sleep`, the loop's timers."""

    def now(self) -> float:
        """Seconds of `time.monotonic`."""
        return time.monotonic()

    def wall(self) -> datetime:
        """The current time in UTC."""
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        """`asyncio.sleep`."""
        await asyncio.sleep(seconds)

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """Schedule ``callback`` on the running loop for monotonic time ``when``."""
        # Convert through a delay: the loop's own time base need not be time.monotonic.
        return asyncio.get_running_loop().call_later(max(0.0, when - time.monotonic()), callback)

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Schedule ``callback`` on the running loop after ``delay`` seconds."""
        return asyncio.get_running_loop().call_later(max(0.0, delay), callback)


class Timer(Protocol):
    """A scheduled callback that can still be called off (`asyncio.TimerHandle` is one)."""

    def cancel(self) -> None:
        """Do not run the callback; harmless once it ran or was cancelled."""


@runtime_checkable
class TimerClock(Clock, Protocol):
    """A `Clock` that also schedules timers (`SystemClock` and the memory engine's do)."""

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback`` (in the event loop) once `now` reaches ``when``."""

    def call_later(self, delay: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback`` (in the event loop) after ``delay`` seconds."""
