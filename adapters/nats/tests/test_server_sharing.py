"""Processes with one store dir share the embedded nats-server one of them runs on it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aclbus.bus import Bus
from aclbus.settings import Settings, StreamLimits
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import (
    EmbeddedServer,
    EmbeddedServerError,
    StoreDirInUse,
    serving,
    wait_unused,
)
from aclbus_nats.server.embedded import LOCK_NAME
from aclbus_nats.server.process import open_lock
from aclbus_nats.settings import NatsSettings


def test_serving_finds_the_server_that_holds_the_store_dir(tmp_path: Path) -> None:
    assert serving(tmp_path) is None  # never used
    with EmbeddedServer(store_dir=tmp_path) as server:
        assert serving(tmp_path) == server.url
        with pytest.raises(StoreDirInUse, match="in use by another nats-server"):
            EmbeddedServer(store_dir=tmp_path).start()
    assert serving(tmp_path) is None  # stopped: the lock is free, the old config ignored


def test_serving_gives_up_on_a_held_store_that_never_answers(tmp_path: Path) -> None:
    lock = open_lock(tmp_path / LOCK_NAME)  # held, as by a server that hangs while starting
    try:
        with pytest.raises(EmbeddedServerError, match=r"did not answer healthy within 0\.3 s"):
            serving(tmp_path, timeout=0.3)
    finally:
        lock.close()


async def test_a_bus_with_the_data_dir_of_a_running_server_connects_to_it(
    tmp_path: Path,
) -> None:
    """No server configured, a data dir in use: the bus uses that server, starts none."""
    async with EmbeddedServer(store_dir=tmp_path / "nats") as server:
        settings = Settings(
            backend="nats", data_dir=tmp_path, streams=StreamLimits(storage="memory")
        )
        backend = NatsBackend(settings, nats=NatsSettings())
        async with Bus(settings, backend=backend, entry_points=False) as bus:
            facts = await bus.backend.describe()
            assert facts["servers"] == [server.url]
            assert facts["embedded"] is False  # another process's server: not ours to stop
            sibling = bus.backend.sibling()
            assert isinstance(sibling, NatsBackend)
            assert sibling.nats_settings.servers == [server.url]
            # the server's owner, stopping, would wait for this bus to leave
            assert not await asyncio.to_thread(wait_unused, server, timeout=0.2)
        assert server.running  # the bus' stop left the server alone
        assert await asyncio.to_thread(wait_unused, server, timeout=5)
