"""Provisioning on a real nats-server: streams per traffic class, updates, conflicts, consumers."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import JetStreamContext, api

from aclbus.acl import ACLMessage
from aclbus.backend import DeliveryMode, KVSpec, StreamSpec, SubscriptionSpec
from aclbus.bus import Bus
from aclbus.errors import ConfigurationError, RequestTimeout
from aclbus.settings import Settings, StreamLimits
from aclbus.subjects import Subjects, TrafficClass
from aclbus.testing.collector import Collector, Deliveries, eventually
from aclbus_nats.backend import NATS_HEADER_ALLOWANCE, NatsBackend
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.settings import NatsSettings

WAIT = 5.0
TRAFFIC = ("agent", "broadcast", "group", "topic", "dlq")

MakeBus = Callable[..., Bus]


@pytest.fixture
def prefix() -> str:
    return "pv" + uuid.uuid4().hex[:10]


@pytest_asyncio.fixture
async def js(nats_server: EmbeddedServer, prefix: str) -> AsyncIterator[JetStreamContext]:
    """A plain JetStream context; every stream under this test's prefix is deleted after."""
    nc: Client = await nats.connect(nats_server.url)
    yield nc.jetstream()
    try:
        for info in await nc.jetstream().streams_info():
            name = info.config.name or ""
            if name.startswith((prefix.upper(), "SQUATTER_" + prefix.upper())):
                await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


@pytest_asyncio.fixture
async def make_bus(nats_server: EmbeddedServer, prefix: str) -> AsyncIterator[MakeBus]:
    """Make (not start) buses under this test's prefix; every one is stopped after the test."""
    buses: list[Bus] = []

    def make(**overrides: Any) -> Bus:
        values: dict[str, Any] = {
            "backend": "nats",
            "subject_prefix": prefix,
            "streams": StreamLimits(max_bytes=1 << 20, storage="memory"),
        }
        values.update(overrides)
        settings = Settings(**values)
        backend = NatsBackend(settings, nats=NatsSettings(servers=[nats_server.url]))
        bus = Bus(settings, backend=backend, entry_points=False)
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.stop()


def connected(bus: Bus) -> bool:
    assert isinstance(bus.backend, NatsBackend)
    return bus.backend.connected


def stream(prefix: str, traffic: str) -> str:
    return Subjects(prefix).stream(TrafficClass(traffic))


async def test_one_stream_per_traffic_class_with_the_configured_limits(
    make_bus: MakeBus, js: JetStreamContext, prefix: str
) -> None:
    limits = StreamLimits(
        max_age=3600.0,
        max_bytes=2 << 20,
        max_msgs=5000,
        duplicate_window=30.0,
        replicas=1,
        storage="file",
        max_consumers=5000,
    )
    bus = make_bus(streams=limits, max_message_bytes=64 << 10)
    await bus.start()

    names = [info.config.name or "" for info in await js.streams_info()]
    mine = sorted(name for name in names if name.startswith(prefix.upper() + "_"))
    assert mine == sorted(stream(prefix, t) for t in TRAFFIC)
    expected_subjects = {
        "agent": [f"{prefix}.agent.>"],  # inboxes and their priority lanes
        "broadcast": [f"{prefix}.broadcast"],
        "group": [f"{prefix}.group.*"],
        "topic": [f"{prefix}.topic.>"],
        "dlq": [f"{prefix}.dlq.*"],
    }
    for traffic in TRAFFIC:
        config = (await js.stream_info(stream(prefix, traffic))).config
        assert config.subjects == expected_subjects[traffic]
        assert config.max_age == 3600.0
        assert config.max_bytes == 2 << 20
        assert config.max_msgs == 5000
        # Room for the Nats-Msg-Id / Nats-TTL headers the backend adds beyond the bus' limit.
        assert config.max_msg_size == (64 << 10) + NATS_HEADER_ALLOWANCE
        assert config.duplicate_window == 30.0
        assert config.storage == api.StorageType.FILE
        assert config.num_replicas == 1
        assert config.allow_msg_ttl is True  # nats-server 2.15 >= 2.11
        assert config.discard == api.DiscardPolicy.NEW  # a full stream refuses, drops nothing
        assert config.max_consumers == 5000  # explicit: the server's default is 1,000
    # The inbox stream announces what its priority lanes store (headers only): an agent
    # makes its lane's consumer when the first urgent message comes, not at start.
    lanes = (await js.stream_info(stream(prefix, "agent"))).config.republish
    assert lanes is not None
    assert (lanes.src, lanes.headers_only) == (f"{prefix}.agent.*.high", True)
    assert lanes.dest == f"_aclbus.stored.{prefix}.agent.{{{{wildcard(1)}}}}.high"


async def test_every_stream_gets_an_explicit_consumer_limit_by_default(
    make_bus: MakeBus, js: JetStreamContext, prefix: str
) -> None:
    """ACLBUS_STREAMS__MAX_CONSUMERS (10,000) on every stream, not the server's 1,000."""
    await make_bus().start()
    for traffic in TRAFFIC:
        config = (await js.stream_info(stream(prefix, traffic))).config
        assert config.max_consumers == 10_000


async def test_streams_of_an_older_version_get_the_limit_and_the_lane_announcements(
    make_bus: MakeBus, js: JetStreamContext, prefix: str
) -> None:
    """A stream made without a consumer limit or announcements is updated, messages kept.

    An agent of the older version had made its priority lane's consumer at start: the agent
    binds it again and gets what waits in the lane.
    """
    inbox = stream(prefix, "agent")
    await js.add_stream(name=inbox, subjects=[f"{prefix}.agent.>"], storage=api.StorageType.MEMORY)
    await js.add_consumer(
        inbox,
        api.ConsumerConfig(
            durable_name=f"{prefix}-prio-bob",
            deliver_subject="_old.bob",
            deliver_group=f"{prefix}-prio-bob",
            filter_subject=f"{prefix}.agent.bob.high",
            ack_policy=api.AckPolicy.EXPLICIT,
        ),
    )
    for i in range(3):
        await js.publish(f"{prefix}.agent.bob", f"ordinary-{i}".encode())
    sender = make_bus()
    await sender.start()
    config = (await js.stream_info(inbox)).config
    assert config.max_consumers == 10_000
    assert config.republish is not None
    assert (await js.stream_info(inbox)).state.messages == 3  # updated in place
    await sender.send(_inform("urgent", receiver_id="bob", priority=9))

    bob = make_bus()
    got: Collector[Any] = Collector()

    @bob.agent("bob").on()
    async def record(msg: ACLMessage) -> None:
        got.add(msg.payload)

    await bob.start()
    # the three ordinary ones are not ACL messages: bob dead-letters them; the urgent one
    # is handled, through the lane consumer the older version made
    assert await got.wait_for(1, timeout=WAIT) == ["urgent"]
    names = sorted(c.name for c in await js.consumers_info(inbox))
    assert names == [f"{prefix}-agent-bob", f"{prefix}-prio-bob"]


async def test_a_lane_message_stored_while_disconnected_is_found_on_reconnect(
    tmp_path: Path, prefix: str
) -> None:
    """An announcement lost while the connection was down: the agent looks again on return.

    The lane's message is stored with the stream's announcements switched off (as if the
    agent's connection had been down when it was announced), then the server restarts: the
    agent, reconnected, finds the message and makes its lane.
    """
    server = EmbeddedServer(store_dir=tmp_path / "store")
    await server.astart()
    settings = Settings(
        backend="nats", subject_prefix=prefix, streams=StreamLimits(max_bytes=1 << 20)
    )
    bus = Bus(
        settings,
        backend=NatsBackend(
            settings,
            nats=NatsSettings(servers=[server.url], reconnect_time_wait=0.1),
        ),
        entry_points=False,
    )
    got: Collector[Any] = Collector()

    @bus.agent("carol").on()
    async def record(msg: ACLMessage) -> None:
        got.add(msg.payload)

    sender = Bus(
        settings,
        backend=NatsBackend(settings, nats=NatsSettings(servers=[server.url])),
        entry_points=False,
    )
    try:
        await bus.start()
        await sender.start()
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            config = (await js.stream_info(stream(prefix, "agent"))).config
            announcing, config.republish = config.republish, None
            await js.update_stream(config)
            await sender.send(_inform("missed", receiver_id="carol", priority=9))
            config.republish = announcing
            await js.update_stream(config)
        finally:
            await nc.close()
        await sender.stop()
        await asyncio.sleep(0.3)
        assert len(got) == 0  # nothing announced it
        await server.arestart()
        assert await got.wait_for(1, timeout=WAIT) == ["missed"]
    finally:
        await sender.stop()
        await bus.stop()
        await server.astop()


@pytest.mark.parametrize("priority", [0, 9], ids=["inbox", "lane"])
async def test_instances_that_make_one_consumer_at_once_both_get_its_messages(
    make_bus: MakeBus, priority: int
) -> None:
    """Two instances of an agent make its consumer in the same instant: both are bound to it.

    The lane's consumer is made when the first urgent message is announced, to every
    instance at once. Had the second creation moved the consumer to its own deliver subject,
    the first instance would be left bound to nothing: once the second stops, the lane's
    messages would wait for nobody.
    """
    sender, first, second = make_bus(), make_bus(), make_bus()
    got: dict[str, list[Any]] = {"first": [], "second": []}
    for bus, name in ((first, "first"), (second, "second")):

        def record(into: list[Any]) -> Callable[[ACLMessage], Any]:
            async def handler(msg: ACLMessage) -> None:
                into.append(msg.payload)

            return handler

        bus.agent("pool").on()(record(got[name]))
    await asyncio.gather(sender.start(), first.start(), second.start())
    for i in range(40):
        await sender.send(_inform(i, receiver_id="pool", priority=priority))
    await eventually(
        lambda: len(got["first"]) + len(got["second"]) >= 40, timeout=WAIT, what="all 40"
    )
    await second.stop()
    for i in range(40, 50):
        await sender.send(_inform(i, receiver_id="pool", priority=priority))
    await eventually(lambda: len(got["first"]) + len(got["second"]) >= 50, timeout=WAIT, what="50")
    assert sorted(got["first"] + got["second"]) == list(range(50))  # each once
    assert got["first"][-10:] == list(range(40, 50))  # the first instance was bound all along


async def test_no_broadcast_stream_when_broadcasts_are_not_persistent(
    make_bus: MakeBus, js: JetStreamContext, prefix: str
) -> None:
    await make_bus(broadcast_mode=DeliveryMode.AT_MOST_ONCE).start()
    names = {info.config.name for info in await js.streams_info()}
    assert stream(prefix, "agent") in names
    assert stream(prefix, "broadcast") not in names


async def test_changed_limits_update_the_streams_and_keep_their_messages(
    make_bus: MakeBus, js: JetStreamContext, prefix: str
) -> None:
    first = make_bus(
        streams=StreamLimits(max_age=3600.0, max_bytes=1 << 20, duplicate_window=30.0),
        max_message_bytes=16 << 10,
    )
    await first.start()
    await first.send(ACLMessage(performative="inform", sender_id="a", receiver_id="b"))
    await first.stop()

    second = make_bus(
        streams=StreamLimits(
            max_age=7200.0, max_bytes=2 << 20, max_msgs=100, duplicate_window=60.0
        ),
        max_message_bytes=32 << 10,
    )
    await second.start()

    for traffic in TRAFFIC:
        info = await js.stream_info(stream(prefix, traffic))
        assert info.config.max_age == 7200.0
        assert info.config.max_bytes == 2 << 20
        assert info.config.max_msgs == 100
        assert info.config.duplicate_window == 60.0
        assert info.config.max_msg_size == (32 << 10) + NATS_HEADER_ALLOWANCE
    inbox = await js.stream_info(stream(prefix, "agent"))
    assert inbox.state.messages == 1  # updated in place, not recreated


@pytest.mark.parametrize(
    ("storage", "change", "reason"),
    [
        ("file", {"storage": "memory"}, "can not change storage type"),
        ("memory", {"replicas": 3}, "replicas > 1 not supported in non-clustered mode"),
    ],
)
async def test_a_change_the_server_refuses_is_a_configuration_error_saying_why(
    make_bus: MakeBus,
    js: JetStreamContext,
    prefix: str,
    storage: str,
    change: dict[str, Any],
    reason: str,
) -> None:
    """A first bus makes the streams; a second one asks for what the server refuses."""
    limits = StreamLimits(max_bytes=1 << 20, storage=storage)
    first = make_bus(streams=limits)
    await first.start()
    await first.stop()

    second = make_bus(streams=limits.model_copy(update=change))
    with pytest.raises(ConfigurationError) as caught:
        await second.start()

    message = str(caught.value)
    assert stream(prefix, "agent") in message
    assert reason in message
    assert not second.started
    assert not connected(second)  # nothing left half-open
    config = (await js.stream_info(stream(prefix, "agent"))).config
    assert (config.storage, config.num_replicas) == (storage, 1)  # left as it was


async def test_a_stream_that_captures_the_same_subjects_is_refused_at_start(
    make_bus: MakeBus, js: JetStreamContext, prefix: str
) -> None:
    """Another stream on ``{prefix}.agent.>``: a clear error from start(), naming it."""
    squatter = f"SQUATTER_{prefix.upper()}"
    await js.add_stream(
        name=squatter, subjects=[f"{prefix}.agent.>"], storage=api.StorageType.MEMORY
    )
    bus = make_bus()

    with pytest.raises(ConfigurationError) as caught:
        await bus.start()

    message = str(caught.value)
    assert stream(prefix, "agent") in message
    assert "subjects overlap" in message
    assert squatter in message
    assert f"{prefix}.agent.>" in message
    assert "ACLBUS_SUBJECT_PREFIX" in message  # what to do about it
    assert not bus.started
    assert not connected(bus)


async def test_an_ephemeral_consumer_is_deleted_on_unsubscribe(
    nats_server: EmbeddedServer, js: JetStreamContext, prefix: str
) -> None:
    settings = Settings(subject_prefix=prefix)
    backend = NatsBackend(settings, nats=NatsSettings(servers=[nats_server.url]))
    await backend.connect()
    try:
        name = f"{prefix.upper()}_EPH"
        await backend.provision(
            StreamSpec(name=name, subjects=(f"{prefix}.eph.>",), storage="memory")
        )
        ephemeral = await backend.subscribe(
            SubscriptionSpec(subject=f"{prefix}.eph.a"), Deliveries()
        )
        durable = await backend.subscribe(
            SubscriptionSpec(subject=f"{prefix}.eph.b", durable=f"{prefix}-keep"), Deliveries()
        )
        assert len(await js.consumers_info(name)) == 2

        await ephemeral.unsubscribe()
        await durable.unsubscribe()

        names = [info.name for info in await js.consumers_info(name)]
        assert names == [f"{prefix}-keep"]  # gone at once, not after an inactive threshold
        assert not ephemeral.active
    finally:
        await backend.close()


async def test_durable_consumers_survive_a_bus_restart(
    make_bus: MakeBus, js: JetStreamContext, prefix: str
) -> None:
    """Messages sent while the agent's bus is down arrive, once each, when it comes back."""
    sender = make_bus()
    await sender.start()
    first = make_bus()
    first.agent("bob").on()(_ignore)
    await sender.broadcast(_inform("before-bob-ever-started"))  # deliver new: never seen
    await first.start()
    await first.stop()

    for i in range(5):
        await sender.send(_inform(i, receiver_id="bob"))
    await sender.broadcast(_inform("while-bob-was-down"))
    inbox = await js.consumer_info(stream(prefix, "agent"), f"{prefix}-agent-bob")
    assert inbox.num_pending == 5

    second = make_bus()
    got: Collector[Any] = Collector()

    @second.agent("bob").on()
    async def record(msg: ACLMessage) -> None:
        got.add(msg.payload)

    await second.start()
    await got.wait_for(6, timeout=WAIT)
    await asyncio.sleep(0.3)  # nothing more comes
    assert sorted(got.items, key=str) == sorted([0, 1, 2, 3, 4, "while-bob-was-down"], key=str)
    assert [p for p in got.items if isinstance(p, int)] == [0, 1, 2, 3, 4]  # in order

    async def all_acked() -> bool:
        info = await js.consumer_info(stream(prefix, "agent"), f"{prefix}-agent-bob")
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)

    await eventually(all_acked, timeout=WAIT, what="bob's inbox consumer has nothing pending")


async def _ignore(msg: ACLMessage) -> None:
    return None


def _inform(payload: Any, **fields: Any) -> ACLMessage:
    return ACLMessage(performative="inform", sender_id="alice", payload=payload, **fields)


async def test_a_kv_bucket_is_updated_to_a_changed_ttl_and_history(
    nats_server: EmbeddedServer,
) -> None:
    bucket = "kvupd-" + uuid.uuid4().hex[:8]
    backend = NatsBackend(Settings(backend="nats"), nats=NatsSettings(servers=[nats_server.url]))
    await backend.connect()
    nc = await nats.connect(nats_server.url)
    try:
        await backend.provision(KVSpec(bucket, ttl=10.0, history=1))
        await (await backend.kv(bucket)).put("k", b"v1")
        await backend.provision(KVSpec(bucket, ttl=20.0, history=3))  # changed: updated
        config = (await nc.jetstream().stream_info(f"KV_{bucket}")).config
        assert (config.max_age, config.max_msgs_per_subject) == (20.0, 3)
        entry = await (await backend.kv(bucket)).get("k")
        assert entry is not None
        assert entry.value == b"v1"  # the data stays
        await backend.provision(KVSpec(bucket, ttl=20.0, history=3))  # unchanged: no-op
    finally:
        await nc.jetstream().delete_stream(f"KV_{bucket}")
        await nc.close()
        await backend.close()


@pytest_asyncio.fixture
async def kv_backend(nats_server: EmbeddedServer) -> AsyncIterator[tuple[NatsBackend, str]]:
    """A connected backend and a bucket name of this test's own; the bucket goes after."""
    bucket = "kvcfg-" + uuid.uuid4().hex[:8]
    backend = NatsBackend(Settings(backend="nats"), nats=NatsSettings(servers=[nats_server.url]))
    await backend.connect()
    try:
        yield backend, bucket
    finally:
        await backend.close()
        nc = await nats.connect(nats_server.url)
        try:
            with contextlib.suppress(Exception):
                await nc.jetstream().delete_stream(f"KV_{bucket}")
        finally:
            await nc.close()


async def kv_config(url: str, bucket: str) -> api.StreamConfig:
    nc = await nats.connect(url)
    try:
        return (await nc.jetstream().stream_info(f"KV_{bucket}")).config
    finally:
        await nc.close()


@pytest.mark.parametrize(("before", "after"), [(None, 1.0), (20.0, 5.0), (5.0, None)])
async def test_a_kv_bucket_ttl_is_updated_below_and_above_the_duplicate_window(
    nats_server: EmbeddedServer,
    kv_backend: tuple[NatsBackend, str],
    before: float | None,
    after: float | None,
) -> None:
    """A bucket's stream dedups within min(ttl, 2 min), as nats-py makes it: a shorter TTL
    must shorten that window too, or JetStream refuses the update."""
    backend, bucket = kv_backend
    await backend.provision(KVSpec(bucket, ttl=before))
    await (await backend.kv(bucket)).put("k", b"kept")
    await backend.provision(KVSpec(bucket, ttl=after))
    config = await kv_config(nats_server.url, bucket)
    assert config.max_age == (after or 0.0)
    assert config.duplicate_window == (min(after, 120.0) if after else 120.0)
    entry = await (await backend.kv(bucket)).get("k")
    assert entry is not None
    assert entry.value == b"kept"


async def test_a_kv_bucket_storage_change_is_refused_naming_the_setting(
    nats_server: EmbeddedServer, kv_backend: tuple[NatsBackend, str]
) -> None:
    """JetStream cannot change a stream's storage: a clear error, not the old bucket kept."""
    backend, bucket = kv_backend
    await backend.provision(KVSpec(bucket, storage="file"))
    with pytest.raises(ConfigurationError) as caught:
        await backend.provision(KVSpec(bucket, storage="memory"))
    message = str(caught.value)
    for part in (repr(bucket), "storage", "'file'", "'memory'", "delete the bucket"):
        assert part in message, message
    assert (await kv_config(nats_server.url, bucket)).storage == api.StorageType.FILE


async def test_a_kv_replicas_change_the_server_refuses_names_the_setting(
    nats_server: EmbeddedServer, kv_backend: tuple[NatsBackend, str]
) -> None:
    """A single server has no replicas to give: the error names replicas 1 -> 3 and why."""
    backend, bucket = kv_backend
    await backend.provision(KVSpec(bucket, ttl=30.0))
    with pytest.raises(ConfigurationError) as caught:
        await backend.provision(KVSpec(bucket, ttl=60.0, replicas=3))
    message = str(caught.value)
    for part in (repr(bucket), "replicas 1 -> 3", "ttl 30 -> 60", "non-clustered"):
        assert part in message, message
    config = await kv_config(nats_server.url, bucket)
    assert (config.num_replicas, config.max_age) == (1, 30.0)  # left as it was


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"replicas": 3}, "non-clustered"),
        ({"history": 65}, "at most 64"),
    ],
)
async def test_a_kv_bucket_the_server_cannot_make_is_a_configuration_error(
    kv_backend: tuple[NatsBackend, str], spec: dict[str, Any], reason: str
) -> None:
    """Not nats-py's ServerError or KeyHistoryTooLargeError: aclbus' own, naming the bucket."""
    backend, bucket = kv_backend
    with pytest.raises(ConfigurationError) as caught:
        await backend.provision(KVSpec(bucket, **spec))
    assert repr(bucket) in str(caught.value)
    assert reason in str(caught.value)


async def test_jetstream_that_does_not_answer_is_a_typed_timeout(
    tmp_path: Path, prefix: str
) -> None:
    # A frozen server (an election, an overload) must not let nats-py's own TimeoutError out
    # of provisioning: callers (and the CLI) get RequestTimeout, naming what went unanswered.
    server = EmbeddedServer(store_dir=tmp_path / "store")
    await server.astart()
    settings = Settings(backend="nats", subject_prefix=prefix)
    backend = NatsBackend(settings, nats=NatsSettings(servers=[server.url], publish_timeout=0.5))
    try:
        await backend.connect()
        server.kill(signal.SIGSTOP)
        try:
            spec = StreamSpec(name=f"{prefix}-frozen", subjects=(f"{prefix}.frozen.>",))
            with pytest.raises(RequestTimeout, match=rf"{prefix}-frozen"):
                await backend.provision(spec)
        finally:
            server.kill(signal.SIGCONT)
    finally:
        with contextlib.suppress(Exception):
            await backend.close()
        await server.astop()
