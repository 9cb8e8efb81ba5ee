"""A 3-node JetStream cluster under faults, with real agents sending all along (SCENARIOS 1-6).

Each test starts a fresh `Cluster(3)` and two buses on it (R3 streams, as with
``ACLBUS_STREAMS__REPLICAS=3``): one sends steadily (`Traffic`: each message retried, with its
message id, until acked), the other runs the receiving agent. Then a fault, then the
accounting: every acked message stored once and handled (or dead-lettered), duplicates counted.
Correctness is asserted strictly; times generously (2 shared cores), and printed (``-s``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from click.testing import CliRunner

from aclbus import Bus, Settings
from aclbus.cli import main as cli_main
from aclbus.settings import StreamLimits
from aclbus_nats.backend import NatsBackend
from aclbus_nats.bench.failover import main as failover_main
from aclbus_nats.bench.traffic import Accounting, Traffic
from aclbus_nats.server import Cluster, EmbeddedServerError
from aclbus_nats.server.binary import find_binary
from aclbus_nats.settings import NatsSettings

pytestmark = pytest.mark.cluster

LAME_DUCK = 'lame_duck_duration: "30s"\nlame_duck_grace_period: "1s"'
"""nats-server's shortest lame duck (2 min by default): clients are moved over ~29 s."""
RECOVERY = 20.0
"""Seconds a hard fault may take to heal before a test fails (elections take 4-9 s)."""


@dataclass
class Rig:
    """A cluster with a sending and a receiving bus, and the traffic between them."""

    cluster: Cluster
    sender: Bus
    receiver: Bus
    traffic: Traffic

    async def leader(self) -> int:
        """The index of the node leading the stream the traffic goes to."""
        nc = await nats.connect(servers=self.cluster.urls, connect_timeout=5)
        try:
            js = nc.jetstream(timeout=5.0)
            deadline = time.monotonic() + RECOVERY
            while True:
                try:
                    stream = await js.find_stream_name_by_subject(self.traffic.subject)
                    leader = (await js.stream_info(stream)).cluster.leader  # type: ignore[union-attr]
                except (TimeoutError, nats.errors.Error):
                    leader = None
                if leader:
                    return self.cluster.index_of(leader)
                assert time.monotonic() < deadline, "the stream has no leader"
                await asyncio.sleep(0.1)
        finally:
            await nc.close()

    async def freeze_leader(self, seconds: float) -> float:
        """SIGSTOP the stream leader's node for ``seconds``, then SIGCONT it.

        Returns:
            When it was frozen (``time.monotonic()``).
        """
        down = await self.leader()
        frozen = time.monotonic()
        self.cluster.kill(down, signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.cluster.kill(down, signal.SIGCONT)
        return frozen

    async def finish(self) -> Accounting:
        """Stop the traffic and account for it, the cluster whole."""
        await self.traffic.stop()
        result = await self.traffic.account(self.cluster.urls)
        print(f"\n{result}")
        assert result.acked, "nothing was acked"
        assert not result.problems(), result.problems()
        return result


def _bus(cluster: Cluster, prefix: str, publish_timeout: float, seed: int | None) -> Bus:
    settings = Settings(
        backend="nats",
        subject_prefix=prefix,
        ack_wait=2.0,
        streams=StreamLimits(replicas=3, max_bytes=8 << 20),
    )
    servers = cluster.urls if seed is None else [cluster.urls[seed]]
    nats_settings = NatsSettings(servers=servers, publish_timeout=publish_timeout)
    return Bus(settings, backend=NatsBackend(settings, nats=nats_settings), entry_points=False)


@asynccontextmanager
async def rig(
    *,
    sync_always: bool = False,
    publish_timeout: float = 5.0,
    rate: float = 20.0,
    seed: int | None = None,
) -> AsyncIterator[Rig]:
    """A fresh cluster with traffic flowing (at least a few messages acked already).

    ``seed``: the buses are given only this node's URL (the rest they learn from it).
    """
    prefix = "cf" + uuid.uuid4().hex[:8]
    async with Cluster(3, name="faults", extra_config=LAME_DUCK, sync_always=sync_always) as c:
        sender = _bus(c, prefix, publish_timeout, seed)
        # The receiver starts first and creates the R3 streams: it keeps the default timeout
        # (also that of JetStream API calls), which a fresh cluster on 2 cores may need.
        receiver = _bus(c, prefix, 5.0, seed)
        async with receiver, sender:
            traffic = Traffic(sender, receiver, rate=rate)
            await traffic.start()
            await traffic.next_ack_after(time.monotonic(), RECOVERY)
            await asyncio.sleep(0.5)
            try:
                yield Rig(c, sender, receiver, traffic)
            finally:
                await traffic.stop()


async def test_stream_leader_sigkill_three_times_loses_nothing() -> None:
    async with rig() as r:
        gaps = []
        for _ in range(3):
            down = await r.leader()
            killed = time.monotonic()
            r.cluster.kill(down, signal.SIGKILL)
            gaps.append(await r.traffic.next_ack_after(killed, RECOVERY))
            await r.cluster.arestart(down)
            await asyncio.sleep(0.3)
        print(f"\nnext PubAck after each stream-leader SIGKILL: {[round(g, 2) for g in gaps]} s")
        await r.finish()
    # Elections take 4-9 s (not configurable); 3 samples cannot check a p99, only a bound.
    assert max(gaps) < RECOVERY


async def test_clients_given_one_url_move_to_the_nodes_the_cluster_announced() -> None:
    # nats-py adds the INFO's connect_urls to its server list: the seed node may die.
    async with rig(seed=0) as r:
        killed = time.monotonic()
        r.cluster.kill(0, signal.SIGKILL)
        gap = await r.traffic.next_ack_after(killed, RECOVERY)
        await r.traffic.next_ack_after(time.monotonic() + 1, RECOVERY)
        await r.cluster.arestart(0)
        await r.finish()
    print(f"PubAcks again {gap:.2f} s after the only configured node was killed")
    assert gap < RECOVERY


async def test_a_fourth_node_takes_a_replica_moved_off_a_peer_under_traffic() -> None:
    async with rig() as r:
        new = await r.cluster.aadd_node()
        assert r.cluster.size == 4
        nc = await nats.connect(servers=r.cluster.urls, connect_timeout=5)
        try:
            js = nc.jetstream(timeout=5.0)
            stream = await js.find_stream_name_by_subject(r.traffic.subject)
            info = await js.stream_info(stream)
            assert info.cluster is not None
            follower = next(p.name for p in info.cluster.replicas or [])
            assert follower != new.server_name
            moved = time.monotonic()
            answer = await nc.request(
                f"$JS.API.STREAM.PEER.REMOVE.{stream}", json.dumps({"peer": follower}).encode()
            )
            assert json.loads(answer.data).get("success") is True, answer.data
            deadline = moved + RECOVERY
            while True:  # JetStream picks the free node to keep three replicas
                info = await js.stream_info(stream)
                assert info.cluster is not None
                peers = {info.cluster.leader} | {p.name for p in info.cluster.replicas or []}
                current = all(p.current for p in info.cluster.replicas or [])
                if new.server_name in peers and follower not in peers and current:
                    break
                assert time.monotonic() < deadline, f"the replica did not move: {peers}"
                await asyncio.sleep(0.2)
            took = time.monotonic() - moved
        finally:
            await nc.close()
        gap = r.traffic.max_gap(moved)
        await r.finish()
    print(
        f"replica moved from {follower} to {new.server_name} in {took:.2f} s; "
        f"longest pause between PubAcks {gap:.2f} s"
    )
    assert len(peers) == 3
    assert gap < RECOVERY


async def _until_stopped(cluster: Cluster, indexes: list[int], within: float) -> None:
    deadline = time.monotonic() + within
    while any(cluster.nodes[i].running for i in indexes):
        assert time.monotonic() < deadline, f"nodes {indexes} still run after {within} s"
        await asyncio.sleep(0.1)


async def test_consumer_leader_sigkill_keeps_the_agent_consuming() -> None:
    async with rig() as r:
        nc = await nats.connect(servers=r.cluster.urls, connect_timeout=5)
        try:
            js = nc.jetstream(timeout=5.0)
            stream = await js.find_stream_name_by_subject(r.traffic.subject)
            [consumer] = [
                c
                for c in await js.consumers_info(stream)
                if r.traffic.subject in (c.config.filter_subjects or [c.config.filter_subject])
            ]
            assert consumer.cluster is not None
            leader = consumer.cluster.leader
        finally:
            await nc.close()
        assert leader
        down = r.cluster.index_of(leader)
        before = r.traffic.handled
        killed = time.monotonic()
        r.cluster.kill(down, signal.SIGKILL)
        deadline = killed + RECOVERY
        while r.traffic.handled <= before + 5:  # handling goes on, the new leader delivers
            assert time.monotonic() < deadline, "the agent stopped consuming"
            await asyncio.sleep(0.05)
        resumed = time.monotonic() - killed
        await r.cluster.arestart(down)
        await r.finish()
    print(f"the agent handled messages again {resumed:.2f} s after the consumer leader died")


async def test_stream_leader_frozen_for_10_s_then_resumed_loses_nothing() -> None:
    async with rig() as r:
        frozen = await r.freeze_leader(10)
        thawed = time.monotonic()
        gap = await r.traffic.next_ack_after(frozen, RECOVERY)
        await r.traffic.next_ack_after(thawed + 1, RECOVERY)  # and it goes on after the thaw
        result = await r.finish()
    print(f"next PubAck {gap:.2f} s after the SIGSTOP; {len(r.traffic.errors)} sends retried")
    assert gap < RECOVERY
    # Duplicate handling is allowed here (SCENARIOS 3): finish() has checked the rest and the
    # accounting printed the count.
    assert result.acked


async def test_lame_duck_and_sigterm_move_clients_without_a_caller_visible_error() -> None:
    binary = find_binary().path
    async with rig() as r:
        down = await r.leader()
        node = r.cluster.nodes[down]
        began = time.monotonic()
        signaller = await asyncio.create_subprocess_exec(
            str(binary), "--signal", f"ldm={node.pid}", stdout=subprocess.DEVNULL
        )
        assert await asyncio.wait_for(signaller.wait(), 10) == 0
        await _until_stopped(r.cluster, [down], 45)  # it drains its clients, then exits
        lame_duck_gap = r.traffic.max_gap(began)
        await r.cluster.arestart(down)

        down = await r.leader()
        terminated = time.monotonic()
        r.cluster.kill(down, signal.SIGTERM)
        await _until_stopped(r.cluster, [down], 15)
        await r.traffic.next_ack_after(time.monotonic() + 1, RECOVERY)
        sigterm_gap = r.traffic.max_gap(terminated)
        await r.cluster.arestart(down)
        errors = [e for e in r.traffic.errors if e.at >= began]
        await r.finish()
    print(
        f"longest pause between PubAcks: lame duck {lame_duck_gap:.2f} s, "
        f"SIGTERM {sigterm_gap:.2f} s"
    )
    assert not errors, errors
    # The promise is <= 2 s (SCENARIOS 2); asserted at 5 s for a loaded 2-core machine.
    assert lame_duck_gap <= 5
    assert sigterm_gap <= 5


async def test_rolling_restart_of_all_three_nodes_under_load_loses_nothing() -> None:
    async with rig() as r:
        began = time.monotonic()
        for i in range(3):
            await r.cluster.arestart(i)  # SIGTERM, start, wait until current
        await r.traffic.next_ack_after(time.monotonic(), RECOVERY)
        gap = r.traffic.max_gap(began)
        await r.finish()
    print(f"longest pause between PubAcks over the rolling restart: {gap:.2f} s")
    assert gap < RECOVERY


async def test_quorum_loss_fails_sends_clearly_and_recovery_keeps_every_acked_message() -> None:
    timeout = 2.0
    async with rig(publish_timeout=timeout) as r:
        leader = await r.leader()
        down = [leader, (leader + 1) % 3]
        killed = time.monotonic()
        for i in down:
            r.cluster.kill(i, signal.SIGKILL)
        await asyncio.sleep(3 * timeout)
        lost_quorum = [e for e in r.traffic.errors if e.at > killed]
        acked_without_quorum = r.traffic.acks_between(killed + 0.5, time.monotonic())
        for i in down:
            await r.cluster.arestart(i)  # the first restart gives the quorum back
        gap = await r.traffic.next_ack_after(killed, RECOVERY)
        await r.finish()
    print(f"{len(lost_quorum)} sends failed without a quorum; PubAcks again after {gap:.2f} s")
    assert acked_without_quorum == 0
    assert len(lost_quorum) >= 2
    for error in lost_quorum:
        assert error.kind == "PublishTimeout", error
        assert r.traffic.subject in error.text
        assert error.took <= timeout + 1.0, error


async def test_whole_cluster_sigkill_and_restart_keeps_streams_and_acked_messages() -> None:
    # sync_interval: always, or the last ~2 min of acked writes may be only in page cache.
    async with rig(sync_always=True) as r:
        killed = time.monotonic()
        for i in range(3):
            r.cluster.kill(i, signal.SIGKILL)
        await _until_stopped(r.cluster, [0, 1, 2], 10)
        await asyncio.sleep(1)
        await r.cluster.astart()
        gap = await r.traffic.next_ack_after(killed, 2 * RECOVERY)
        await r.traffic.next_ack_after(time.monotonic() + 1, RECOVERY)
        result = await r.finish()
    print(f"PubAcks again {gap:.2f} s after the whole cluster was killed")
    assert len(result.acked) > 10


async def test_an_ambiguous_publish_retried_with_its_message_id_is_stored_once() -> None:
    async with rig(publish_timeout=1.0) as r:
        # Shorter than an election: the leader gets every retry once it wakes, stores the
        # first, and answers the last one still waiting "duplicate".
        frozen = await r.freeze_leader(2.5)
        await r.traffic.next_ack_after(time.monotonic(), RECOVERY)
        result = await r.finish()
    timeouts = [e for e in r.traffic.errors if e.at > frozen and e.kind == "PublishTimeout"]
    print(f"{len(timeouts)} publishes timed out (ambiguous); {result.duplicate_acks} duplicate")
    assert timeouts
    assert result.duplicate_acks >= 1


async def test_a_publish_whose_puback_is_late_is_resent_within_its_timeout() -> None:
    # publish_retry_wait (1 s): the send resends with its message id while the leader is
    # frozen, and the one after the thaw is answered "duplicate", with no error for the caller.
    async with rig(publish_timeout=5.0) as r:
        frozen = await r.freeze_leader(2.5)
        await r.traffic.next_ack_after(time.monotonic(), RECOVERY)
        result = await r.finish()
    assert not [e for e in r.traffic.errors if e.at > frozen]
    assert result.duplicate_acks >= 1


def test_the_failover_bench_measures_a_kill_and_loses_nothing(tmp_path: Path) -> None:
    # Through the command line a user runs: `aclbus bench failover` finds the adapter's
    # `cluster failover`, which starts its own cluster.
    out = tmp_path / "failover.json"
    aclbus = Path(sys.executable).with_name("aclbus")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACLBUS_")}
    done = subprocess.run(
        [str(aclbus), "bench", "failover", "--kills", "1", "--json", str(out)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RECOVERY + 60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert figures["kills"] == 1
    assert 0 < figures["next_puback_max_s"] < RECOVERY
    assert figures["lost"] == 0
    assert figures["acked"] > 20
    assert figures["steady_rate_msg_s"] > 10
    assert "| acked but lost" in done.stdout
    assert "kill 1/1: next PubAck after" in done.stderr


def test_failover_runs_on_its_own() -> None:
    result = CliRunner().invoke(cli_main, ["bench", "failover", "core-throughput"])
    assert result.exit_code == 2
    assert "failover runs on its own" in result.output


def test_the_failover_bench_refuses_a_bad_kill_count(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        failover_main(["--kills", "0"])
    assert exit_info.value.code == 2
    assert "--kills must be at least 1" in capsys.readouterr().err


async def test_a_node_cannot_be_added_to_a_cluster_not_started() -> None:
    with pytest.raises(EmbeddedServerError, match="has not been started"):
        await Cluster(3).aadd_node()
