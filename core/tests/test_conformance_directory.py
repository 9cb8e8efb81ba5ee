"""Shared state, the directory and presence on the memory engine (a manual clock)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from aclbus.backend import Capabilities
from aclbus.backends.memory import ManualClock, MemoryBackend
from aclbus.bus import Bus
from aclbus.directory import AgentDescription
from aclbus.directory.presence import Heartbeat
from aclbus.errors import CapabilityError
from aclbus.settings import DirectorySettings, Settings
from aclbus.testing import MemoryConfig
from aclbus.testing.cases.base import BusTestcase
from aclbus.testing.cases.directory import DirectoryTestcase, PresenceTestcase
from aclbus.testing.cases.shared_state import SharedMapTestcase


class TestSharedMap(MemoryConfig, SharedMapTestcase):
    pass


class TestDirectory(MemoryConfig, DirectoryTestcase):
    pass


class TestPresence(MemoryConfig, PresenceTestcase):
    pass


class TestPresenceSlowBeat(MemoryConfig, PresenceTestcase):
    """The same rules with the default interval: the manual clock makes it instant."""

    heartbeat = 5.0


class _NoKV(MemoryBackend):
    capabilities = Capabilities(persistent=True, ack=True)


def test_a_backend_without_kv_is_a_capability_error() -> None:
    bus = Bus(Settings(backend="memory"), backend=_NoKV(Settings(backend="memory")))
    with pytest.raises(CapabilityError, match="kv"):
        bus.shared_map("x")
    with pytest.raises(CapabilityError, match="directory"):
        _ = bus.directory


def test_presence_ttl_must_cover_two_heartbeats() -> None:
    with pytest.raises(ValueError, match="presence_ttl"):
        DirectorySettings(heartbeat_interval=10, presence_ttl=15)
    assert Settings(directory={"heartbeat_interval": 1}).directory.presence_ttl == 60.0


async def test_a_failing_heartbeat_is_retried_and_never_dies(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A beat that raises is logged (once per outage) and tried again; stop() ends it."""
    clock = ManualClock()
    calls: list[float] = []

    async def beat() -> None:
        calls.append(clock.now())
        if len(calls) <= 3:
            raise ConnectionError("password=hunter2 connection refused")

    heart = Heartbeat("flaky", 1.0, beat, clock.sleep)
    heart.start()
    with caplog.at_level(logging.DEBUG, logger="aclbus.directory"):
        await clock.advance(10.0)
    assert heart.running
    assert calls[:4] == [1.0, 1.5, 2.0, 2.5]  # retried every half interval while failing
    assert calls[4:6] == [3.5, 4.5]  # then back to the interval
    assert heart.failures == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "hunter2" not in caplog.text
    await heart.stop()
    assert not heart.running
    count = len(calls)
    await clock.advance(10.0)
    assert len(calls) == count
    await heart.stop()  # idempotent


async def test_stopping_a_heartbeat_does_not_cancel_the_caller() -> None:
    clock = ManualClock()

    async def beat() -> None:
        await asyncio.sleep(0)

    heart = Heartbeat("calm", 1.0, beat, clock.sleep)
    heart.start()
    await clock.advance(0)
    await heart.stop()
    await asyncio.sleep(0)  # still running: the caller was not cancelled
    assert not heart.running


class TestPresenceTiming(MemoryConfig, BusTestcase):
    """On the manual clock the 3-interval rule can be checked to the beat."""

    async def test_unavailable_exactly_after_three_missed_intervals(self, bus: Bus) -> None:
        dying = bus.sibling()
        try:
            await dying.start()
            await dying.directory.register(AgentDescription(agent_id="d"), heartbeat=1.0)
            await dying.backend.close()  # right after its first beat
            await self.advance(2.9)
            assert await bus.directory.is_available("d")  # not flipped early
            await self.advance(0.1)
            assert not await bus.directory.is_available("d")
        finally:
            await dying.stop()
