"""How long ``send()`` blocks while the broker is away, and with which error (docs/reliability.md).

Each test runs a nats-server of its own and stops (or freezes) it. The bounds asserted are the
settings' (``publish_timeout``, the reconnect policy) with generous margins for a loaded
machine: these are behaviours, not performance figures.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from aclbus.acl import ACLMessage
from aclbus.bus import Bus
from aclbus.errors import BackendClosed, PublishTimeout
from aclbus.settings import Settings, StreamLimits
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.settings import NatsSettings

PUBLISH_TIMEOUT = 1.0
SLACK = 4.0  # what a loaded machine may add to a bound
WAIT = 10.0  # for the client to notice a stopped server


@pytest_asyncio.fixture
async def server() -> AsyncIterator[EmbeddedServer]:
    running = EmbeddedServer(server_name="aclbus-away")
    await running.astart()
    try:
        yield running
    finally:
        if running.running:
            running.kill(signal.SIGCONT)  # a frozen one must thaw to stop
        await running.astop()


async def started_bus(server: EmbeddedServer, **nats: Any) -> Bus:
    settings = Settings(
        backend="nats",
        subject_prefix="away",
        streams=StreamLimits(max_bytes=1 << 20, storage="memory"),
    )
    options: dict[str, Any] = {"servers": [server.url], "publish_timeout": PUBLISH_TIMEOUT}
    options.update(nats)
    # No plugins: a plugin that resends (the dedup plugin's publish retry) adds its own time.
    bus = Bus(
        settings, backend=NatsBackend(settings, nats=NatsSettings(**options)), entry_points=False
    )
    await bus.start()
    return bus


async def until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not {what} within {WAIT} s")
        await asyncio.sleep(0.02)


def inform() -> ACLMessage:
    return ACLMessage(performative="inform", sender_id="alice", receiver_id="bob")


def backend_of(bus: Bus) -> NatsBackend:
    assert isinstance(bus.backend, NatsBackend)
    return bus.backend


async def test_send_to_a_stopped_server_fails_after_the_publish_timeout(
    server: EmbeddedServer,
) -> None:
    """The client reconnects (forever by default) and buffers the publish; no PubAck comes, so
    ``send()`` raises `PublishTimeout`, a `TimeoutError`, once ``publish_timeout`` is over."""
    bus = await started_bus(server)
    try:
        await bus.send(inform())
        await server.astop()
        await until(lambda: not backend_of(bus).connected, "disconnected")
        started = time.monotonic()
        with pytest.raises(PublishTimeout) as caught:
            await bus.send(inform())
        took = time.monotonic() - started
    finally:
        await bus.stop()
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.timeout == PUBLISH_TIMEOUT
    assert PUBLISH_TIMEOUT - 0.05 <= took <= PUBLISH_TIMEOUT + SLACK, took


async def test_send_to_a_frozen_server_fails_after_the_publish_timeout(
    server: EmbeddedServer,
) -> None:
    """A frozen server (SIGSTOP) looks connected until the pings run out; the bound is the
    same: ``publish_timeout``."""
    bus = await started_bus(server)
    try:
        await bus.send(inform())
        server.kill(signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(PublishTimeout):
            await bus.send(inform())
        took = time.monotonic() - started
        assert backend_of(bus).connected  # not noticed yet: the pings have not run out
    finally:
        server.kill(signal.SIGCONT)
        await bus.stop()
    assert PUBLISH_TIMEOUT - 0.05 <= took <= PUBLISH_TIMEOUT + SLACK, took


async def test_wait_for_around_send_must_tell_its_timeout_from_publish_timeout(
    server: EmbeddedServer,
) -> None:
    """Both are `TimeoutError`: catch `PublishTimeout` first (send gave up: resend the same
    message); a bare TimeoutError is wait_for's own (the send was cancelled)."""
    bus = await started_bus(server)
    try:
        await server.astop()
        await until(lambda: not backend_of(bus).connected, "disconnected")

        async def outcome(limit: float) -> str:
            try:
                await asyncio.wait_for(bus.send(inform()), limit)
            except PublishTimeout:
                return "send's PublishTimeout"
            except TimeoutError:
                return "wait_for's TimeoutError"
            return "sent"

        assert await outcome(PUBLISH_TIMEOUT + SLACK) == "send's PublishTimeout"
        assert await outcome(PUBLISH_TIMEOUT / 4) == "wait_for's TimeoutError"
    finally:
        await bus.stop()


async def test_send_fails_at_once_when_reconnecting_has_given_up(
    server: EmbeddedServer,
) -> None:
    """With ``max_reconnect_attempts`` spent the connection is closed for good: `BackendClosed`
    at once, not after a timeout."""
    bus = await started_bus(server, max_reconnect_attempts=1, reconnect_time_wait=0.1)
    try:
        await server.astop()
        nc = backend_of(bus)._nc
        assert nc is not None
        await until(lambda: nc.is_closed, "closed after one reconnect attempt")
        started = time.monotonic()
        with pytest.raises(BackendClosed):
            await bus.send(inform())
        took = time.monotonic() - started
    finally:
        await bus.stop()
    assert took < 0.5, took
