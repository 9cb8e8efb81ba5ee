"""The connection: pings, a frozen or restarted server, draining, size and storage limits.

Tests that freeze, restart or reconfigure a server start their own `EmbeddedServer`; the
others use the session's ``nats_server``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
import pytest_asyncio
from nats.js import api
from pydantic import SecretStr

from aclbus import wire
from aclbus.acl import ACLMessage
from aclbus.backend import DeliveryMode, StreamSpec
from aclbus.bus import Bus
from aclbus.errors import (
    ACLBusError,
    BackendClosed,
    ConfigurationError,
    HeadersTooLarge,
    MessageTooLarge,
    PublishTimeout,
    StreamFull,
)
from aclbus.middleware import Delivery
from aclbus.settings import Settings, StreamLimits
from aclbus.testing.collector import Collector, eventually
from aclbus_auth import AuthPlugin, AuthSettings
from aclbus_nats.backend import NATS_HEADER_ALLOWANCE, NatsBackend
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.server.process import reserve_port
from aclbus_nats.settings import NatsSettings

WAIT = 5.0


def settings(prefix: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "backend": "nats",
        "subject_prefix": prefix,
        "streams": StreamLimits(max_bytes=1 << 20, storage="memory"),
    }
    values.update(overrides)
    return Settings(**values)


def make_bus(
    url: str,
    prefix: str,
    nats: NatsSettings | None = None,
    *,
    plugins: tuple[object, ...] = (),
    **overrides: Any,
) -> Bus:
    s = settings(prefix, **overrides)
    nats = nats or NatsSettings(servers=[url])
    return Bus(s, backend=NatsBackend(s, nats=nats), entry_points=False, plugins=plugins)


def inform(receiver: str | None = "bob", payload: Any = None) -> ACLMessage:
    return ACLMessage(
        performative="inform", sender_id="alice", receiver_id=receiver, payload=payload
    )


@pytest.fixture
def prefix() -> str:
    return "cx" + uuid.uuid4().hex[:10]


@pytest_asyncio.fixture
async def cleanup(nats_server: EmbeddedServer, prefix: str) -> AsyncIterator[None]:
    """Delete this test's streams from the shared server afterwards."""
    yield
    nc = await nats.connect(nats_server.url)
    try:
        for info in await nc.jetstream().streams_info():
            name = info.config.name or ""
            if name.startswith(prefix.upper()):
                await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


# -- pings and a frozen server -------------------------------------------------------------------


async def test_the_client_pings_every_few_seconds(
    nats_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nats-py's own default (120 s) would hide a hung server for minutes."""
    defaults = NatsSettings(servers=[nats_server.url])
    assert defaults.ping_interval <= 5
    monkeypatch.setenv("ACLBUS_NATS__PING_INTERVAL", "1.5")
    monkeypatch.setenv("ACLBUS_NATS__MAX_OUTSTANDING_PINGS", "3")
    for configured, interval, outstanding in [
        (defaults, defaults.ping_interval, defaults.max_outstanding_pings),
        (NatsSettings(servers=[nats_server.url]), 1.5, 3),
    ]:
        backend = NatsBackend(Settings(), nats=configured)
        await backend.connect()
        try:
            assert backend._nc is not None
            options = backend._nc.options  # what the client really runs with
            assert options["ping_interval"] == interval
            assert options["max_outstanding_pings"] == outstanding
        finally:
            await backend.close()
    with pytest.raises(ValueError, match="ping_interval"):
        NatsSettings(ping_interval=120)


async def test_a_frozen_server_is_noticed_and_the_client_reconnects(
    caplog: pytest.LogCaptureFixture, prefix: str
) -> None:
    """SIGSTOP: noticed after about (max_outstanding_pings + 1) pings; back after SIGCONT."""
    interval, outstanding = 1.0, 2
    async with EmbeddedServer(server_name="aclbus-frozen") as server:
        nats_settings = NatsSettings(
            servers=[server.url],
            ping_interval=interval,
            max_outstanding_pings=outstanding,
            connect_timeout=1.0,
            reconnect_time_wait=0.2,
        )
        bus = make_bus(server.url, prefix, nats_settings)
        got: Collector[ACLMessage] = Collector()
        bus.agent("bob").on()(_record(got))
        async with bus:
            backend = bus.backend
            assert isinstance(backend, NatsBackend)
            try:
                frozen = time.monotonic()
                server.kill(signal.SIGSTOP)
                # nats-py sends a ping every interval and gives up when one more is due than
                # max_outstanding_pings allows: (outstanding + 1) * interval at the latest.
                bound = (outstanding + 1) * interval + 1.0
                await eventually(lambda: not backend.connected, timeout=bound, what="noticed")
                noticed = time.monotonic() - frozen
            finally:
                server.kill(signal.SIGCONT)
            thawed = time.monotonic()
            await eventually(lambda: backend.connected, timeout=WAIT, what="reconnected")
            back = time.monotonic() - thawed

            await bus.send(inform("bob", "after"))  # the agent's consumer works again
            [msg] = await got.wait_for(1, timeout=WAIT)
            assert msg.payload == "after"
    assert noticed >= interval * outstanding  # by the pings, not by anything else
    assert back < 2.0, f"reconnected {back:.2f} s after SIGCONT"
    warnings = [r.getMessage() for r in caplog.records if r.name == "aclbus.nats"]
    assert "nats: disconnected" in warnings
    assert any(w.startswith("nats: reconnected to 127.0.0.1:") for w in warnings)


async def test_no_reachable_server_fails_the_start_within_a_bound(prefix: str) -> None:
    """nats-py alone would retry the first connection forever (max_reconnect_attempts=-1)."""
    port = reserve_port()  # nothing listens there
    nats_settings = NatsSettings(servers=[f"nats://127.0.0.1:{port}"], connect_timeout=0.5)
    assert nats_settings.max_reconnect_attempts == -1
    bus = make_bus("", prefix, nats_settings)

    started = time.monotonic()
    with pytest.raises(BackendClosed) as caught:
        await bus.start()
    took = time.monotonic() - started

    assert took < 0.5 * 2 + 1.0, f"gave up after {took:.2f} s"
    assert f"cannot connect to NATS at nats://127.0.0.1:{port}" in str(caught.value)
    assert "no server answered within 1 s" in str(caught.value)
    assert "Connect call failed" in str(caught.value)  # the last reason
    assert not bus.started


# -- a server restart while publishing -----------------------------------------------------------


async def test_a_server_restart_loses_no_acknowledged_message(prefix: str) -> None:
    """SIGTERM and start again on the same port and store, in the middle of 400 publishes.

    A publish that raised PublishTimeout or BackendClosed would be retried with the same message
    (so the same Nats-Msg-Id); at the end every acknowledged id is in the stream exactly once.
    SCENARIOS 2 asks more of a graceful restart: no caller-visible error, acks again within 2 s.
    """
    total, restart_after = 400, 100
    async with EmbeddedServer(server_name="aclbus-restart") as server:
        nats_settings = NatsSettings(servers=[server.url], publish_timeout=5.0, connect_timeout=1.0)
        bus = make_bus(
            server.url,
            prefix,
            nats_settings,
            streams=StreamLimits(max_bytes=8 << 20, storage="file"),
        )
        acked: dict[str, float] = {}
        retried: list[str] = []

        async def publish_all() -> None:
            for i in range(total):
                msg = inform("bob", i)
                deadline = time.monotonic() + 20
                while True:
                    try:
                        [ack] = await bus.send(msg)
                    except (PublishTimeout, BackendClosed) as exc:
                        retried.append(type(exc).__name__)
                        assert time.monotonic() < deadline, f"message {i} never acknowledged"
                        await asyncio.sleep(0.05)
                        continue
                    assert ack.stream == f"{prefix.upper()}_AGENT"
                    acked[msg.message_id] = time.monotonic()
                    break

        async with bus:
            publisher = asyncio.create_task(publish_all())
            await eventually(lambda: len(acked) >= restart_after, timeout=WAIT)
            restarted = time.monotonic()
            await server.arestart()
            restart_took = time.monotonic() - restarted
            await asyncio.wait_for(publisher, 60)

        stamps = sorted(acked.values())
        longest_gap = max(b - a for a, b in itertools.pairwise(stamps))
        assert len(acked) == total
        assert restart_took < 5.0
        assert longest_gap < 10.0  # R8: recovery within 10 s

        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            info = await js.stream_info(f"{prefix.upper()}_AGENT")
            assert info.state.messages == total
            stored: list[str] = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                raw = await js.get_msg(f"{prefix.upper()}_AGENT", seq)
                stored.append((raw.headers or {})["Nats-Msg-Id"])
        finally:
            await nc.close()
    assert sorted(stored) == sorted(acked)  # every acked id, each exactly once
    print(
        f"\nrestart: {restart_took:.3f} s, longest gap between PubAcks {longest_gap:.3f} s, "
        f"retried publishes: {retried or 'none'}"
    )
    assert retried == []  # the backend itself published again after reconnecting
    assert longest_gap < 2.0


# -- closing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 3])
@pytest.mark.usefixtures("cleanup")
async def test_close_lets_running_handlers_finish_and_loses_nothing(
    nats_server: EmbeddedServer,
    prefix: str,
    concurrency: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Stopping mid-handler: the handler ends and acks; the rest waits for the next start."""
    events: list[tuple[str, Any]] = []
    running = asyncio.Event()

    async def slow(msg: ACLMessage) -> None:
        events.append(("start", msg.payload))
        running.set()
        try:
            await asyncio.sleep(0.3)
        except asyncio.CancelledError:
            events.append(("cancelled", msg.payload))
            raise
        events.append(("done", msg.payload))

    bus = make_bus(nats_server.url, prefix, ack_wait=1.0, handler_concurrency=concurrency)
    bus.agent("bob").on()(slow)
    await bus.start()
    for i in range(3):
        await bus.send(inform("bob", i))
    await asyncio.wait_for(running.wait(), WAIT)
    caplog.clear()
    await bus.stop()
    await bus.stop()  # idempotent

    assert not any(kind == "cancelled" for kind, _ in events)
    started = [p for kind, p in events if kind == "start"]
    assert [p for kind, p in events if kind == "done"] == started
    assert isinstance(bus.backend, NatsBackend)
    assert not bus.backend.connected
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [t for t in asyncio.all_tasks() if "aclbus-nats" in t.get_name()]

    # What was not handled is delivered to the next instance; nothing twice.
    again = make_bus(nats_server.url, prefix, ack_wait=1.0)
    got: Collector[ACLMessage] = Collector()
    again.agent("bob").on()(_record(got))
    async with again:
        rest = sorted({0, 1, 2} - set(started))
        if rest:
            await got.wait_for(len(rest), timeout=WAIT)
        await asyncio.sleep(1.2)  # past ack_wait: anything unacked would come back
    assert sorted(m.payload for m in got.items) == rest


@pytest.mark.usefixtures("cleanup")
async def test_a_handler_may_stop_its_own_agent(nats_server: EmbeddedServer, prefix: str) -> None:
    """With a pool of workers: the stop returns, the handler ends and acks, no worker is left."""
    bus = make_bus(nats_server.url, prefix, handler_concurrency=3)
    finished: Collector[Any] = Collector()

    async def stop_myself(msg: ACLMessage) -> None:
        await bus.agent("bob").stop()
        finished.add(msg.payload)

    bus.agent("bob").on()(stop_myself)
    async with bus:
        await bus.send(inform("bob", "last"))
        assert await finished.wait_for(1, timeout=WAIT) == ["last"]
        assert not bus.agent("bob").started
        await eventually(
            lambda: not [t for t in asyncio.all_tasks() if "aclbus-nats-worker" in t.get_name()],
            timeout=WAIT,
            what="the workers ended",
        )
        nc = await nats.connect(nats_server.url)
        try:
            info = await nc.jetstream().consumer_info(
                f"{prefix.upper()}_AGENT", f"{prefix}-agent-bob"
            )
        finally:
            await nc.close()
    assert (info.ack_floor.stream_seq, info.num_ack_pending) == (1, 0)


# -- message size --------------------------------------------------------------------------------


@pytest.mark.usefixtures("cleanup")
async def test_an_oversize_message_is_refused_before_anything_is_sent(
    nats_server: EmbeddedServer, prefix: str
) -> None:
    """SCENARIOS 16: MessageTooLarge for send, broadcast and request; nothing on the wire."""
    bus = make_bus(nats_server.url, prefix, max_message_bytes=4096)
    nc = await nats.connect(nats_server.url)
    seen: list[str] = []

    async def record(msg: Any) -> None:
        seen.append(msg.subject)

    await nc.subscribe(f"{prefix}.>", cb=record)
    await nc.flush()
    try:
        async with bus:
            big = "x" * 5000
            for attempt in (
                bus.send(inform("bob", big)),
                bus.broadcast(inform(None, big)),
                bus.request(
                    ACLMessage(
                        performative="request", sender_id="a", receiver_id="bob", payload=big
                    )
                ),
            ):
                with pytest.raises(MessageTooLarge) as caught:
                    await attempt
                assert caught.value.limit == 4096
                assert caught.value.size > 5000
                assert "ACLBUS_MAX_MESSAGE_BYTES" in str(caught.value)
            await nc.flush()
            await asyncio.sleep(0.1)
            assert seen == []
            info = await nc.jetstream().stream_info(f"{prefix.upper()}_AGENT")
            assert info.state.messages == 0
    finally:
        await nc.close()


@pytest.mark.usefixtures("cleanup")
async def test_the_streams_max_msg_size_is_message_too_large(
    nats_server: EmbeddedServer, prefix: str
) -> None:
    """SCENARIOS 16 at the stream; and a message right at the bus' limit is still stored."""
    backend = NatsBackend(settings(prefix), nats=NatsSettings(servers=[nats_server.url]))
    await backend.connect()
    try:
        name = f"{prefix.upper()}_SMALL"
        await backend.provision(
            StreamSpec(name=name, subjects=(f"{prefix}.small",), max_msg_size=1024)
        )
        limit = 1024 + NATS_HEADER_ALLOWANCE
        with pytest.raises(MessageTooLarge) as caught:
            await backend.publish(f"{prefix}.small", {}, b"x" * (limit + 1), msg_id="m1")
        assert caught.value.limit == limit
        assert "the stream's max_msg_size" in str(caught.value)
    finally:
        await backend.close()

    # The bus counts its limit without the Nats-* headers the backend adds (wire format §10);
    # the stream leaves room for them, so a message of exactly the limit is stored.
    bus = make_bus(nats_server.url, prefix, max_message_bytes=2048)
    async with bus:

        def with_ttl(payload: str) -> ACLMessage:  # Nats-TTL joins Nats-Msg-Id on the wire
            return ACLMessage(
                performative="inform", sender_id="a", receiver_id="bob", ttl=60, payload=payload
            )

        empty = wire.encoded_size(*wire.encode(with_ttl(""), bus.codecs))
        exact = with_ttl("x" * (2048 - empty))
        assert wire.encoded_size(*wire.encode(exact, bus.codecs)) == 2048
        [ack] = await bus.send(exact)
        assert ack.sequence == 1


# -- storage exhausted ---------------------------------------------------------------------------

LIMITS = """
accounts {
  APP: { jetstream: enabled, users: [{user: app, password: app-pw}] }
  SMALL: { jetstream: { max_file: 64KB, max_mem: 64KB }, users: [{user: small, password: sm-pw}] }
}
"""


@pytest.fixture(scope="module")
def limited_server() -> Iterator[EmbeddedServer]:
    """A server with a roomy account and one with 64 KB of JetStream storage."""
    with EmbeddedServer(server_name="aclbus-limits", extra_config=LIMITS) as server:
        yield server


async def test_a_full_discard_new_stream_refuses_publishes_clearly(
    limited_server: EmbeddedServer, prefix: str
) -> None:
    """SCENARIOS 25: each publish either gets a PubAck and is stored, or raises; none dropped."""
    nc = await nats.connect(limited_server.url, user="app", password="app-pw")
    name = f"{prefix.upper()}_FULL"
    await nc.jetstream().add_stream(
        name=name,
        subjects=[f"{prefix}.full"],
        max_bytes=8192,
        discard=api.DiscardPolicy.NEW,
        storage=api.StorageType.MEMORY,
    )
    backend = NatsBackend(settings(prefix), nats=NatsSettings(servers=[limited_server.url]))
    app = AuthPlugin(AuthSettings(user="app", password=SecretStr("app-pw")))
    options = app.aclbus_connection_options(settings(prefix))
    assert options is not None
    backend.configure_connection(options)
    await backend.connect()
    try:
        acks = await _publish_until_refused(backend, f"{prefix}.full", 1000)
        info = await nc.jetstream().stream_info(name)
        assert info.state.messages == acks > 0
    finally:
        await backend.close()
        await nc.jetstream().delete_stream(name)
        await nc.close()


async def test_an_account_out_of_storage_is_a_clear_error(
    limited_server: EmbeddedServer, prefix: str
) -> None:
    """SCENARIOS 25, account limits: refused at start-up if the limits do not fit, else later."""
    as_small = (AuthPlugin(AuthSettings(user="small", password=SecretStr("sm-pw"))),)
    too_big = make_bus(
        limited_server.url, prefix, plugins=as_small, streams=StreamLimits(max_bytes=1 << 20)
    )
    with pytest.raises(ConfigurationError, match="insufficient storage resources"):
        await too_big.start()

    unbounded = make_bus(
        limited_server.url, prefix, plugins=as_small, streams=StreamLimits(max_bytes=None)
    )
    async with unbounded:
        assert isinstance(unbounded.backend, NatsBackend)
        acks, error = await _until_refused(
            lambda i: unbounded.send(inform("bob", "x" * 1000 + str(i))), 200
        )
        assert isinstance(error, StreamFull)
        assert "resource limits exceeded for account" in str(error)
        assert "(JetStream code 10002)" in str(error)
        assert "publish again with the same message id" in str(error)
        nc = await nats.connect(limited_server.url, user="small", password="sm-pw")
        try:
            info = await nc.jetstream().stream_info(f"{prefix.upper()}_AGENT")
            assert info.state.messages == acks > 0
            for traffic in ("AGENT", "BROADCAST", "GROUP", "TOPIC", "DLQ"):
                await nc.jetstream().delete_stream(f"{prefix.upper()}_{traffic}")
        finally:
            await nc.close()


# -- the embedded server -------------------------------------------------------------------------


async def test_the_embedded_server_keeps_its_store_dir(tmp_path: Path, prefix: str) -> None:
    """No servers configured: the bus starts its own; ACLBUS_NATS__EMBEDDED_STORE_DIR keeps it."""
    store = tmp_path / "store"
    embedded = NatsSettings(servers=[], embedded_store_dir=store)
    first = make_bus("", prefix, embedded, streams=StreamLimits(max_bytes=1 << 20))
    async with first:
        backend = first.backend
        assert isinstance(backend, NatsBackend)
        assert backend.server is not None
        assert backend.server.running
        assert backend.server.url.startswith("nats://127.0.0.1:")
        await first.send(inform("bob", "kept"))
    assert not backend.server.running  # stopped with the bus
    assert (store / "jetstream").is_dir()

    second = make_bus("", prefix, embedded, streams=StreamLimits(max_bytes=1 << 20))
    got: Collector[ACLMessage] = Collector()
    second.agent("bob").on()(_record(got))
    async with second:
        [msg] = await got.wait_for(1, timeout=WAIT)
    assert msg.payload == "kept"


# -- helpers -------------------------------------------------------------------------------------


def _record(got: Collector[ACLMessage]) -> Any:
    async def record(msg: ACLMessage) -> None:
        got.add(msg)

    return record


async def _until_refused(
    publish: Callable[[int], Awaitable[object]], limit: int
) -> tuple[int, ACLBusError]:
    """Publish until refused: how many were acknowledged, and the refusal."""
    for i in range(limit):
        try:
            await publish(i)
        except ACLBusError as exc:
            return i, exc
    raise AssertionError(f"{limit} publishes and none refused")


async def _publish_until_refused(backend: NatsBackend, subject: str, size: int) -> int:
    acks, error = await _until_refused(
        lambda i: backend.publish(subject, {}, b"x" * size, msg_id=f"m{i}"), 100
    )
    assert isinstance(error, StreamFull)
    message = str(error)
    assert "maximum bytes exceeded" in message
    assert "storage is full" in message
    assert "ACLBUS_STREAMS__MAX_BYTES" in message
    return acks


def many_headers(total: int) -> dict[str, str]:
    """Application headers (each value at most 1024 characters) of about ``total`` bytes."""
    return {f"x-h{i:03d}": "v" * 1000 for i in range(total // 1000 + 1)}


@pytest.mark.usefixtures("cleanup")
async def test_a_header_block_over_64_kib_is_refused_before_anything_is_sent(
    nats_server: EmbeddedServer, prefix: str
) -> None:
    """JetStream stores a header block of at most 65535 bytes (it answers 10097 "header size
    exceeds maximum allowed of 64k" after the round trip): HeadersTooLarge, before sending."""
    bus = make_bus(nats_server.url, prefix)  # the body limit (1 MiB) is far away
    nc = await nats.connect(nats_server.url)
    seen: list[str] = []

    async def record(msg: Any) -> None:
        seen.append(msg.subject)

    await nc.subscribe(f"{prefix}.>", cb=record)
    await nc.flush()
    try:
        async with bus:
            msg = ACLMessage(
                performative="inform",
                sender_id="alice",
                receiver_id="bob",
                headers=many_headers(70_000),
            )
            with pytest.raises(HeadersTooLarge) as caught:
                await bus.send(msg)
            error = caught.value
            assert isinstance(error, MessageTooLarge)
            assert error.limit == 65535
            assert error.size > 70_000
            text = str(error)
            assert f"{prefix}.agent.bob" in text
            assert str(error.size) in text
            assert "65535" in text
            assert "payload" in text  # what to do: move the big values into the body
            await nc.flush()
            await asyncio.sleep(0.1)
            assert seen == []
            info = await nc.jetstream().stream_info(f"{prefix.upper()}_AGENT")
            assert info.state.messages == 0
    finally:
        await nc.close()


@pytest.mark.usefixtures("cleanup")
async def test_a_header_block_of_exactly_64_kib_minus_one_is_stored(
    nats_server: EmbeddedServer, prefix: str
) -> None:
    """The limit is the server's: a block of 65535 bytes (Nats-Msg-Id included) is stored,
    one more byte is not; a core NATS message has no such limit."""
    backend = NatsBackend(settings(prefix), nats=NatsSettings(servers=[nats_server.url]))
    await backend.connect()
    try:
        await backend.provision(StreamSpec(name=f"{prefix.upper()}_H", subjects=(f"{prefix}.h",)))

        def block(size: int) -> dict[str, str]:
            # NATS/1.0 CRLF, "x-big: value" CRLF, "Nats-Msg-Id: m" CRLF, CRLF
            headers = {"x-big": ""}
            headers["x-big"] = "v" * (
                size - wire.encoded_size({**headers, "Nats-Msg-Id": "m"}, b"")
            )
            return headers

        ack = await backend.publish(f"{prefix}.h", block(65535), b"body", msg_id="m")
        assert ack.sequence == 1
        with pytest.raises(HeadersTooLarge):
            await backend.publish(f"{prefix}.h", block(65536), b"body", msg_id="m")
        await backend.publish(f"{prefix}.core", block(70_000), b"", mode=DeliveryMode.AT_MOST_ONCE)
    finally:
        await backend.close()


@pytest.mark.usefixtures("cleanup")
async def test_stopping_with_a_backlog_does_not_spend_its_delivery_attempts(
    nats_server: EmbeddedServer, prefix: str
) -> None:
    """Stopping hands the queued deliveries back, after the subscription has ended.

    Handed back while the subscription still stood, the server sent them straight back to it,
    to be handed back again, each round one more delivery attempt: under load a stop could
    use up ``max_deliver`` and dead-letter good messages.
    """
    gate = asyncio.Event()
    started: Collector[Any] = Collector()

    async def slow(msg: ACLMessage) -> None:
        started.add(msg.payload)
        await gate.wait()

    bus = make_bus(nats_server.url, prefix, ack_wait=5.0, max_deliver=2)
    bus.agent("bob").on()(slow)
    async with bus:
        for i in range(300):
            await bus.send(inform("bob", i))
        await started.wait_for(1, timeout=WAIT)
        await asyncio.sleep(0.3)  # the server has pushed the backlog: it waits in the queue
        stopping = asyncio.create_task(bus.agent("bob").stop())
        await asyncio.sleep(0.1)
        gate.set()
        await stopping
        await asyncio.sleep(0.5)  # an advisory of exhausted deliveries would come meanwhile
        assert await bus.dead_letters.list() == []
    again = make_bus(nats_server.url, prefix, ack_wait=5.0, max_deliver=2)
    got: Collector[ACLMessage] = Collector()
    attempts: list[int] = []

    async def take(msg: ACLMessage, delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        got.add(msg)

    again.agent("bob").on()(take)
    async with again:
        await got.wait_for(299, timeout=30)
        assert await again.dead_letters.list() == []
    assert sorted(m.payload for m in got.items) == list(range(1, 300))
    assert max(attempts) <= 2
