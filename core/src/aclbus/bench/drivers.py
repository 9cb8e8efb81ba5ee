"""The loops every column shares: counted and paced publishers, and arrival counting.

All columns use these, so a figure's differences come from the code under test and not from
the way it is driven. Every loop is bounded: by a count, and by the step's timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aclbus.bench.errors import BenchTimeout
from aclbus.plugin.bench_columns import STAMP_MIN_SIZE, Sample

__all__ = ["STAMP_WIDTH", "Arrivals", "publish_many", "publish_paced", "read_stamp", "stamp"]

STAMP_WIDTH = STAMP_MIN_SIZE
"""Bytes of a payload's leading send time (`time.perf_counter`, ``%020.9f``)."""

clock = time.perf_counter


def stamp(size: int, at: float | None = None) -> bytes:
    """A payload of ``size`` bytes (at least `STAMP_WIDTH`) that starts with a send time.

    Args:
        size: Payload bytes.
        at: The time to write; None: now.
    """
    head = f"{clock() if at is None else at:0{STAMP_WIDTH}.9f}".encode()
    return head.ljust(size, b"x")


def read_stamp(payload: bytes | str) -> float:
    """The send time at the start of a `stamp` payload."""
    return float(payload[:STAMP_WIDTH])


class Arrivals:
    """Counts arrivals (and their latencies) until ``expected`` have come.

    Args:
        expected: Arrivals that complete the step.
        column: The column's name, for the timeout error.
        step: The step's name, for the timeout error.
    """

    def __init__(self, expected: int, column: str, step: str) -> None:
        self.expected = expected
        self.count = 0
        self.latencies: list[float] = []
        self.started = clock()
        self.last = self.started
        self._column = column
        self._step = step
        self._done = asyncio.Event()
        if expected <= 0:
            self._done.set()

    def start(self) -> None:
        """Mark the start of the timed part (the first publish)."""
        self.started = self.last = clock()

    def arrived(self, sent_at: float | None = None) -> None:
        """Count one arrival; with ``sent_at``, record its latency."""
        now = clock()
        self.count += 1
        self.last = now
        if sent_at is not None:
            self.latencies.append(now - sent_at)
        if self.count >= self.expected:
            self._done.set()

    async def wait(self, timeout: float) -> Sample:
        """Wait until every expected arrival came, at most ``timeout`` seconds.

        Raises:
            BenchTimeout: Some had not arrived in time.
        """
        try:
            if not self._done.is_set():
                await asyncio.wait_for(self._done.wait(), timeout)
        except TimeoutError:
            raise BenchTimeout(
                self._column,
                self._step,
                timeout,
                f"{self.count} of {self.expected} messages arrived",
            ) from None
        return Sample(self.count, self.last - self.started, self.latencies)


async def publish_many(send: Callable[[int], Awaitable[object]], count: int, window: int) -> None:
    """Call ``send(i)`` for ``i`` in ``range(count)``, ``window`` calls awaiting at once.

    ``window`` coroutines each take every ``window``-th index, so a publish that waits for its
    acknowledgement overlaps with the others, without a task per message.
    """
    window = max(1, min(window, count))

    async def worker(first: int) -> None:
        for i in range(first, count, window):
            await send(i)

    await asyncio.gather(*(worker(w) for w in range(window)))


async def publish_paced(
    send: Callable[[int, float], Awaitable[object]],
    rate: float,
    duration: float,
    window: int,
) -> int:
    """Call ``send(i, due)`` at ``rate`` per second for ``duration`` seconds.

    Message ``i`` is due at ``start + i / rate``; it is stamped with its due time, not the time
    it was sent, so a publisher that falls behind shows in the latencies (no coordinated
    omission). At most ``window`` sends wait at once.

    Returns:
        How many messages were sent: ``int(rate * duration)``.
    """
    total = max(1, int(rate * duration))
    start = clock()
    window = max(1, min(window, total))

    async def worker(first: int) -> None:
        for i in range(first, total, window):
            due = start + i / rate
            ahead = due - clock()
            if ahead > 0:
                await asyncio.sleep(ahead)
            await send(i, due)

    await asyncio.gather(*(worker(w) for w in range(window)))
    return total
