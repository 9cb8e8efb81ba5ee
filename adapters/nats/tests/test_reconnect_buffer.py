"""SCENARIOS 15: a full reconnect buffer is an error the caller sees, not a silent drop."""

from __future__ import annotations

import asyncio

from aclbus.backend import DeliveryMode
from aclbus.errors import BackendClosed
from aclbus.settings import Settings
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.settings import NatsSettings


async def test_publishing_while_reconnecting_fills_the_buffer_then_fails_clearly() -> None:
    server = EmbeddedServer(server_name="aclbus-buffer")
    await server.astart()
    backend = NatsBackend(
        Settings(backend="nats"),
        nats=NatsSettings(servers=[server.url], reconnect_buffer=4096, reconnect_time_wait=0.1),
    )
    await backend.connect()
    try:
        await server.astop()
        for _ in range(100):  # until the client has noticed and is reconnecting
            if not backend.connected:
                break
            await asyncio.sleep(0.05)
        assert not backend.connected
        sent = 0
        refusal: BackendClosed | None = None
        for _ in range(20):
            try:
                await backend.publish("core.x", {}, b"x" * 1000, mode=DeliveryMode.AT_MOST_ONCE)
            except BackendClosed as exc:
                refusal = exc
                break
            sent += 1
        assert refusal is not None
        assert "reconnect buffer is full" in str(refusal)
        assert 1 <= sent <= 5  # the buffered ones, then the refusal
        await server.arestart()
        for _ in range(100):
            if backend.connected:
                break
            await asyncio.sleep(0.05)
        assert backend.connected
        await backend.publish("core.x", {}, b"after", mode=DeliveryMode.AT_MOST_ONCE)
    finally:
        await backend.close()
        await server.astop()
