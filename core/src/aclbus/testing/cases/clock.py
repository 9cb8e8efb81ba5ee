"""The backend's clock: the monotonic and wall-clock time its deadlines and timestamps follow."""

from __future__ import annotations

import asyncio
import math
from contextlib import suppress
from datetime import timedelta
from typing import ClassVar

from aclbus.backend import Backend, Capabilities, Clock, KVSpec
from aclbus.testing.cases.base import BackendTestcase
from aclbus.testing.collector import DEFAULT_TIMEOUT

__all__ = ["ClockTestcase"]

SKEW = timedelta(seconds=2)
"""How far a KV entry's stamp may stray from the clock: a real broker stamps entries with its
own time (or the client's), a manual clock stamps them with itself, exactly."""


class ClockTestcase(BackendTestcase):
    """`Backend.clock` reads the time the backend lives by, and moves as `advance` lets it.

    Plugins read the time through it (dedup claim deadlines, presence beats) so that, on the
    memory engine under a `ManualClock`, their deadlines move with the engine's TTLs and ack
    timers; on a real broker it is the real clock.
    """

    requires: ClassVar[Capabilities] = Capabilities()

    async def test_the_clock_reads_monotonic_seconds_and_utc_wall_time(
        self, backend: Backend
    ) -> None:
        """``now()`` is finite float seconds that never go back; ``wall()`` is aware UTC."""
        clock = backend.clock
        assert isinstance(clock, Clock)
        first = clock.now()
        second = clock.now()
        assert isinstance(first, float)
        assert math.isfinite(first)
        assert second >= first
        wall = clock.wall()
        assert wall.tzinfo is not None
        assert wall.utcoffset() == timedelta(0)

    async def test_time_passes_on_the_clock_as_the_backend_lets_it(self, backend: Backend) -> None:
        """After ``advance(s)``, both readings have moved by ``s`` (plus what the wait took)."""
        clock = backend.clock
        now, wall = clock.now(), clock.wall()
        await self.advance(1.5)
        moved = clock.now() - now
        assert 1.5 - 0.05 <= moved <= 1.5 + DEFAULT_TIMEOUT, moved
        wall_moved = (clock.wall() - wall).total_seconds()
        assert 1.5 - 0.05 <= wall_moved <= 1.5 + DEFAULT_TIMEOUT, wall_moved

    async def test_sleep_waits_on_the_clock(self, backend: Backend) -> None:
        """``sleep(s)`` returns once ``s`` have passed on the clock, not before."""
        sleeping = asyncio.ensure_future(backend.clock.sleep(1.0))
        try:
            await self.advance(0.4)
            assert not sleeping.done()
            await self.advance(1.0)
            await asyncio.wait_for(sleeping, DEFAULT_TIMEOUT)
        finally:
            sleeping.cancel()
            with suppress(asyncio.CancelledError):
                await sleeping

    async def test_kv_entries_are_stamped_on_the_wall_clock(self, backend: Backend) -> None:
        """A KV entry's ``created`` is the clock's wall time of the write (within `SKEW`)."""
        if not backend.capabilities.kv:
            return
        bucket = f"kvclock-{self.namespace}"
        await backend.provision(KVSpec(bucket=bucket))
        kv = await backend.kv(bucket)
        await self.advance(0.5)  # a manual clock is not at its start any more
        before = backend.clock.wall()
        await kv.put("stamped", b"now")
        after = backend.clock.wall()
        entry = await kv.get("stamped")
        assert entry is not None
        assert before - SKEW <= entry.created <= after + SKEW, (before, entry.created, after)
