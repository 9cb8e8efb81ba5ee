"""ManualClock and SystemClock: the time base every deadline of the memory engine uses."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

from aclbus.backends.memory import ManualClock, SystemClock
from aclbus.errors import ConfigurationError


async def test_timers_fire_in_time_order_at_their_due_time() -> None:
    clock = ManualClock()
    fired: list[tuple[str, float]] = []
    clock.call_later(3.0, lambda: fired.append(("c", clock.now())))
    clock.call_later(1.0, lambda: fired.append(("a", clock.now())))
    clock.call_at(2.0, lambda: fired.append(("b", clock.now())))
    clock.call_later(10.0, lambda: fired.append(("late", clock.now())))
    await clock.advance(5.0)
    assert fired == [("a", 1.0), ("b", 2.0), ("c", 3.0)]
    assert clock.now() == 5.0
    assert clock.pending == 1
    assert clock.next_due() == 10.0


async def test_equal_due_times_fire_in_scheduling_order() -> None:
    clock = ManualClock()
    fired: list[int] = []
    for i in range(5):
        clock.call_later(1.0, partial(fired.append, i))
    await clock.advance(1.0)
    assert fired == [0, 1, 2, 3, 4]


async def test_timer_due_exactly_at_the_end_fires_and_one_just_after_does_not() -> None:
    clock = ManualClock()
    fired: list[str] = []
    clock.call_later(2.0, lambda: fired.append("at"))
    clock.call_later(2.000001, lambda: fired.append("after"))
    await clock.advance(2.0)
    assert fired == ["at"]


async def test_cancelled_timer_does_not_fire() -> None:
    clock = ManualClock()
    fired: list[str] = []
    timer = clock.call_later(1.0, lambda: fired.append("x"))
    timer.cancel()
    await clock.advance(2.0)
    assert fired == []
    assert clock.pending == 0
    timer.cancel()  # harmless once more


async def test_timer_scheduled_by_a_timer_fires_within_the_same_advance() -> None:
    clock = ManualClock()
    fired: list[float] = []

    def first() -> None:
        fired.append(clock.now())
        clock.call_later(1.5, lambda: fired.append(clock.now()))

    clock.call_later(1.0, first)
    await clock.advance(3.0)
    assert fired == [1.0, 2.5]


async def test_advance_lets_woken_tasks_run_before_returning() -> None:
    clock = ManualClock()
    steps: list[str] = []

    async def worker() -> None:
        await clock.sleep(1.0)
        steps.append("woke")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        steps.append("finished")

    task = asyncio.create_task(worker())
    await clock.advance(0.5)
    assert steps == []
    await clock.advance(0.5)
    assert steps == ["woke", "finished"]
    assert task.done()


async def test_sleep_of_zero_does_not_need_the_clock() -> None:
    clock = ManualClock()
    await asyncio.wait_for(clock.sleep(0), 1.0)
    assert clock.now() == 0.0


async def test_cancelled_sleep_leaves_no_timer() -> None:
    clock = ManualClock()
    task = asyncio.create_task(clock.sleep(5.0))
    await clock.settle()
    assert clock.pending == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.pending == 0


async def test_advance_cannot_go_back() -> None:
    clock = ManualClock(start=10.0)
    with pytest.raises(ConfigurationError, match="-1"):
        await clock.advance(-1)
    assert clock.now() == 10.0


async def test_wall_clock_follows_the_manual_time() -> None:
    start = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
    clock = ManualClock(start=100.0, wall_start=start)
    assert clock.wall() == start
    await clock.advance(90.0)
    assert clock.wall() == start + timedelta(seconds=90)
    assert clock.wall().tzinfo is UTC


async def test_two_runs_fire_identically() -> None:
    async def run() -> list[tuple[int, float]]:
        clock = ManualClock()
        fired: list[tuple[int, float]] = []

        def record(i: int) -> None:
            fired.append((i, clock.now()))

        for i, delay in enumerate((0.3, 0.1, 0.2, 0.1, 5.0)):
            clock.call_later(delay, partial(record, i))
        for _ in range(3):
            await clock.advance(0.15)
        return fired

    first, second = await run(), await run()
    assert first == second == [(1, 0.1), (3, 0.1), (2, 0.2), (0, 0.3)]


async def test_callback_error_reaches_the_test() -> None:
    clock = ManualClock()

    def broken() -> None:
        raise RuntimeError("boom")

    clock.call_later(1.0, broken)
    with pytest.raises(RuntimeError, match="boom"):
        await clock.advance(2.0)


async def test_system_clock_runs_timers_on_the_loop() -> None:
    clock = SystemClock()
    fired = asyncio.Event()
    before = clock.now()
    clock.call_at(before + 0.01, fired.set)
    await asyncio.wait_for(fired.wait(), 1.0)
    assert clock.now() >= before + 0.01 - 1e-3
    cancelled: list[str] = []
    clock.call_later(0.01, lambda: cancelled.append("x")).cancel()
    await clock.sleep(0.03)
    assert cancelled == []
    assert clock.wall().tzinfo is UTC
