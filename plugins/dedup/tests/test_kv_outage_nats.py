"""The dedup plugin on a real 3-node nats-server cluster while its KV bucket is down for 15 s.

The claims bucket (R1) lives on node 2, the bus' streams on node 0, and the bus connects to
node 0 only. Killing node 2 takes the bucket away, and only the bucket: its calls fail at
once (``no responders``) while messages go on being stored and delivered, as when the KV's
leader alone fails over. Node 2 then restarts on its store, and the bucket comes back with
its records. The counts are of messages, never of time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import nats
from nats.js import api

import aclbus_dedup
from aclbus import ACLMessage, Bus, Performative, Settings
from aclbus.settings import StreamLimits
from aclbus.subjects import TrafficClass
from aclbus.testing import eventually
from aclbus_dedup import DedupSettings, Record, Status
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import Cluster, EmbeddedServer
from aclbus_nats.settings import NatsSettings

OUTAGE = 15.0
RATE = 20  # messages sent per second, before, during and after the outage
CLUSTER = "dedupkv"
STREAMS_NODE, KV_NODE = 0, 2


def tagged_cluster(root: Path) -> Cluster:
    """Three nodes, each tagged ``node:<i>`` (an ``include`` next to its generated config)."""
    for i in range(3):
        store = root / f"{CLUSTER}-{i}"
        store.mkdir(parents=True, mode=0o700)
        (store / "tags.conf").write_text(f'server_tags: ["node:{i}"]\n')
    return Cluster(3, name=CLUSTER, store_dir=root, extra_config='include "tags.conf"')


async def place(url: str, bus: Bus) -> None:
    """Make ``bus``' streams on the streams node and its claims bucket on the KV node.

    The bus and the plugin provision them again at start; an update without placement leaves
    a stream where it is.
    """
    window = DedupSettings().window_for(bus.settings)
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for traffic in TrafficClass:
            await js.add_stream(
                api.StreamConfig(
                    name=bus.subjects.stream(traffic),
                    subjects=list(bus.subjects.stream_subjects(traffic)),
                    storage=api.StorageType.FILE,
                    placement=api.Placement(tags=[f"node:{STREAMS_NODE}"]),
                )
            )
        bucket = f"{bus.settings.subject_prefix}-dedup"
        # What nats-py's create_key_value makes (it drops a placement), placed.
        await js.add_stream(
            api.StreamConfig(
                name=f"KV_{bucket}",
                subjects=[f"$KV.{bucket}.>"],
                allow_direct=True,
                allow_rollup_hdrs=True,
                allow_msg_ttl=True,
                deny_delete=True,
                discard=api.DiscardPolicy.NEW,
                duplicate_window=min(window, 120.0),
                max_age=window,
                max_msgs_per_subject=1,
                num_replicas=1,
                storage=api.StorageType.FILE,
                placement=api.Placement(tags=[f"node:{KV_NODE}"]),
            )
        )
    finally:
        await nc.close()


async def leader_of(url: str, stream: str) -> str | None:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(stream)
        return info.cluster.leader if info.cluster else None
    finally:
        await nc.close()


async def send_for(bus: Bus, seconds: float, sent: list[str]) -> None:
    """Send ``RATE`` messages a second to the worker for ``seconds``."""
    for i in range(int(seconds * RATE)):
        msg = ACLMessage(
            performative=Performative.INFORM, sender_id="tester", receiver_id="worker", payload=i
        )
        await bus.send(msg)
        sent.append(msg.message_id)
        await asyncio.sleep(1 / RATE)


async def test_the_kv_down_for_15_s_under_load_dead_letters_nothing_and_runs_each_once(
    tmp_path: Path,
) -> None:
    prefix = "kvdown" + uuid.uuid4().hex[:6]
    async with tagged_cluster(tmp_path / "cluster") as cluster:
        url = cluster.urls[STREAMS_NODE]
        settings = Settings(
            backend="nats",
            subject_prefix=prefix,
            handler_concurrency=4,
            streams=StreamLimits(max_bytes=8 << 20, storage="file"),
        )
        assert (settings.max_deliver, settings.ack_wait) == (10, 30.0)  # the defaults
        bus = Bus(
            settings,
            plugins=[aclbus_dedup],
            backend=NatsBackend(settings, nats=NatsSettings(servers=[url])),
            entry_points=False,
        )
        runs: Counter[str] = Counter()

        @bus.agent("worker").on(Performative.INFORM)
        async def handle(msg: ACLMessage) -> None:
            runs[msg.message_id] += 1
            await asyncio.sleep(0.002)

        await place(url, bus)
        sent: list[str] = []
        async with bus:
            inbox = bus.subjects.stream(TrafficClass.INBOX)
            assert await leader_of(url, inbox) == f"{CLUSTER}-{STREAMS_NODE}"
            assert await leader_of(url, f"KV_{prefix}-dedup") == f"{CLUSTER}-{KV_NODE}"
            await send_for(bus, 2.0, sent)
            before = len(sent)
            cluster.kill(KV_NODE)  # SIGKILL: the bucket is gone, the streams are not
            await send_for(bus, OUTAGE, sent)
            handled = len(runs)  # by the end of the outage
            await cluster.arestart(KV_NODE)
            await send_for(bus, 2.0, sent)
            await eventually(
                lambda: len(runs) == len(sent), timeout=60.0, what="every message handled"
            )
            await asyncio.sleep(2.0)  # room for a redelivery or an advisory to show up
            letters = await bus.dead_letters.list(limit=1000)
            kv = await bus.backend.kv(f"{prefix}-dedup")
            statuses: Counter[Status | None] = Counter()
            for key in await kv.keys():
                entry = await kv.get(key)
                record = None if entry is None else Record.decode(entry.value)
                statuses[None if record is None else record.status] += 1
            stats = aclbus_dedup.stats(bus)
        assert letters == []  # 0 dead-lettered
        assert runs == Counter({message_id: 1 for message_id in sent})  # 0 lost, 0 twice
        assert statuses == Counter({Status.DONE: len(sent)})
        # Nothing ran unchecked during the outage: at most the runs that had their claim.
        assert handled <= before + settings.handler_concurrency
        assert stats.held >= 1
        assert (stats.lost, stats.taken_over) == (0, 0)


async def test_a_server_crash_of_15_s_mid_load_dead_letters_nothing_and_runs_each_once(
    tmp_path: Path,
) -> None:
    """The one server dies (SIGKILL) while handlers run, and restarts on its store 15 s later:
    the done writes of the handlers that were running fail, the claims of the deliveries
    already handed to the client fail, the acks wait in the client's reconnect buffer."""
    prefix = "crash" + uuid.uuid4().hex[:6]
    server = EmbeddedServer(store_dir=tmp_path / "nats")
    async with server:
        settings = Settings(
            backend="nats",
            subject_prefix=prefix,
            handler_concurrency=4,
            streams=StreamLimits(max_bytes=8 << 20, storage="file"),
        )
        bus = Bus(
            settings,
            plugins=[aclbus_dedup],
            backend=NatsBackend(settings, nats=NatsSettings(servers=[server.url])),
            entry_points=False,
        )
        runs: Counter[str] = Counter()

        @bus.agent("worker").on(Performative.INFORM)
        async def handle(msg: ACLMessage) -> None:
            runs[msg.message_id] += 1
            await asyncio.sleep(0.05)

        sent: list[str] = []
        async with bus:
            for i in range(400):
                msg = ACLMessage(
                    performative=Performative.INFORM,
                    sender_id="tester",
                    receiver_id="worker",
                    payload=i,
                )
                await bus.send(msg)
                sent.append(msg.message_id)
            await eventually(lambda: len(runs) >= 40, what="the work under way")
            server.kill()  # SIGKILL, with handlers running and deliveries queued
            killed_at = len(runs)
            await asyncio.sleep(OUTAGE)
            handled = len(runs)
            await server.arestart()
            await eventually(
                lambda: len(runs) == len(sent), timeout=60.0, what="every message handled"
            )
            await asyncio.sleep(2.0)
            letters = await bus.dead_letters.list(limit=1000)
            stats = aclbus_dedup.stats(bus)
        assert letters == []  # 0 dead-lettered
        assert runs == Counter({message_id: 1 for message_id in sent})  # 0 lost, 0 twice
        assert handled <= killed_at + settings.handler_concurrency  # nothing ran unchecked
        # A create that landed while its reply was lost is this delivery's own claim: it is
        # adopted, not waited out for a claim timeout and taken over.
        assert (stats.lost, stats.taken_over) == (0, 0)
