"""Connection state and reconnections, on a nats-server of the test's own that is restarted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

import aclbus_metrics
from aclbus import Bus, Settings
from aclbus.settings import StreamLimits
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.settings import NatsSettings

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def server() -> AsyncIterator[EmbeddedServer]:
    running = EmbeddedServer(server_name="aclbus-metrics")
    await running.astart()
    try:
        yield running
    finally:
        await running.astop()


def sample(bus: Bus, name: str) -> float:
    text = aclbus_metrics.exposition(aclbus_metrics.registry(bus)).decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    )


async def until(bus: Bus, name: str, expected: float) -> None:
    for _ in range(500):  # 10 s at most
        if sample(bus, name) == expected:
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"{name} not {expected} within 10 s (is {sample(bus, name)})")


async def test_a_restart_is_seen_as_down_then_one_reconnect(server: EmbeddedServer) -> None:
    settings = Settings(
        backend="nats",
        subject_prefix="metricsreconnect",
        streams=StreamLimits(max_bytes=1 << 20, storage="memory"),
    )
    backend = NatsBackend(
        settings, nats=NatsSettings(servers=[server.url], reconnect_time_wait=0.1)
    )
    bus = Bus(settings, backend=backend, plugins=[aclbus_metrics], entry_points=False)
    async with bus:
        assert sample(bus, "aclbus_connected") == 1
        assert sample(bus, "aclbus_reconnects_total") == 0
        await server.astop()
        await until(bus, "aclbus_connected", 0)
        await server.astart()
        await until(bus, "aclbus_reconnects_total", 1)
        assert sample(bus, "aclbus_connected") == 1
