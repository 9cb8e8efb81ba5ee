"""`Heartbeat.stop` ends the beating, even when a beat swallows the cancellation."""

from __future__ import annotations

import asyncio
import contextlib

from aclbus.directory.presence import Heartbeat


async def test_stop_ends_a_heartbeat_whose_beat_swallows_the_cancellation() -> None:
    """On Python 3.11 `asyncio.wait_for` (in nats-py's requests) swallows a cancellation
    that comes with the reply; a stop must not then wait forever on a task beating on."""
    beats = 0
    beating = asyncio.Event()

    async def beat() -> None:
        nonlocal beats
        beats += 1
        beating.set()
        # as wait_for does when the reply and the cancellation come together
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.05)

    heart = Heartbeat("a", 0.01, beat, asyncio.sleep)
    heart.start()
    await beating.wait()  # the beat is under way: stop() cancels it mid-request
    stopping = asyncio.ensure_future(heart.stop())
    done, _ = await asyncio.wait({stopping}, timeout=2.0)
    stopping.cancel()
    assert stopping in done, "stop() is waiting on a heartbeat that beats on"
    assert not heart.running
    stopped_at = beats
    await asyncio.sleep(0.1)
    assert beats == stopped_at


async def test_a_stopped_heartbeat_starts_again() -> None:
    beats = 0

    async def beat() -> None:
        nonlocal beats
        beats += 1

    heart = Heartbeat("a", 0.01, beat, asyncio.sleep)
    heart.start()
    await asyncio.sleep(0.05)
    await heart.stop()
    first = beats
    assert first > 0
    heart.start()
    await asyncio.sleep(0.05)
    assert heart.running
    assert beats > first
    await heart.stop()
