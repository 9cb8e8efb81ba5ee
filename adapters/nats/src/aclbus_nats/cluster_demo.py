"""``aclbus cluster demo`` (and ``aclbus demo --cluster``): the demo, with a node killed midway.

The core's demo (`aclbus.demo.run_demo`) knows no cluster and no NATS: it takes a `Fault`,
injected halfway through its work items and recovered from once they are handled. This command
starts a fresh 3-node cluster with R3 streams and runs the demo on it with a fault that
SIGKILLs the node leading the inbox stream (found from STREAM.INFO's cluster leader) and starts
it again a moment later; the recovery waits until that node is back and current, so that the
gather and the contract net run on the whole cluster. The demo reports when sending resumed and
that no acknowledged work item was lost. The core's ``demo --cluster``
finds this command by its name, so the core imports nothing of the adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator

import click
import nats
from rich.console import Console

from aclbus import ACLBusError
from aclbus.demo import run_demo
from aclbus.settings import Settings
from aclbus.subjects import Subjects, TrafficClass
from aclbus_nats.server import Cluster

__all__ = ["LeaderKill", "cluster_demo"]

NODES = 3

# Long enough to ride out a leader election (4-8 s measured, docs/reliability.md): a send
# during the failover waits for the new leader's PubAck instead of failing.
_PUBLISH_TIMEOUT = "30"
_ACK_WAIT = "5"
_RESTART_PAUSE = 1.0
_HEAL_TIMEOUT = 90.0
"""Seconds the recovery waits for every stream to have a leader and current replicas."""
_HEAL_POLL = 0.25


async def _streams_led(urls: list[str], timeout: float) -> None:
    """Wait until every stream of the cluster answers with a leader and current replicas.

    Raises:
        ACLBusError: Not within ``timeout`` seconds (naming the streams still unled).
    """
    deadline = time.monotonic() + timeout
    waiting: list[str] = ["(not asked yet)"]
    nc = await nats.connect(servers=urls, connect_timeout=5)
    try:
        js = nc.jetstream(timeout=2.0)
        while time.monotonic() < deadline:
            try:
                infos = await js.streams_info()
            except Exception:  # no answer yet: the meta leader is being elected
                await asyncio.sleep(_HEAL_POLL)
                continue
            waiting = [
                info.config.name or "?"
                for info in infos
                if info.cluster is None
                or not info.cluster.leader
                or any(not (r.current or False) for r in info.cluster.replicas or [])
            ]
            if not waiting:
                return
            await asyncio.sleep(_HEAL_POLL)
    finally:
        await nc.close()
    raise ACLBusError(f"the cluster did not heal within {timeout:g} s: {', '.join(waiting)}")


class LeaderKill:
    """An `aclbus.demo.Fault`: SIGKILL the node leading a stream, then restart it.

    Args:
        cluster: The running cluster.
        stream: The stream whose leader's node is killed.
        pause: Seconds between the kill and the restart.
    """

    def __init__(self, cluster: Cluster, stream: str, *, pause: float = _RESTART_PAUSE) -> None:
        self._cluster = cluster
        self._stream = stream
        self._pause = pause
        self._restart: asyncio.Task[str] | None = None

    async def inject(self) -> str:
        """Kill the stream leader's node and start restarting it in the background.

        Returns:
            ``node killed: <name> (leader of <stream>)``.
        """
        nc = await nats.connect(servers=self._cluster.urls, connect_timeout=5)
        try:
            info = await nc.jetstream().stream_info(self._stream)
        finally:
            await nc.close()
        leader = info.cluster.leader if info.cluster is not None else None
        if not leader:
            raise ACLBusError(f"stream {self._stream!r} reports no cluster leader to kill")
        index = self._cluster.index_of(leader)
        self._cluster.kill(index)  # SIGKILL: a crash, reaped before this returns
        self._restart = asyncio.create_task(self._bring_back(index, leader))
        return f"node killed: {leader} (leader of stream {self._stream})"

    async def _bring_back(self, index: int, name: str) -> str:
        await asyncio.sleep(self._pause)
        t0 = time.perf_counter()
        await self._cluster.arestart(index)
        # The node is current in the meta group; the streams it led may still be electing
        # (slowly on a loaded machine): the gather and the contract net need them led.
        await _streams_led(self._cluster.urls, _HEAL_TIMEOUT)
        return f"node restarted: {name}, healthy and current after {time.perf_counter() - t0:.2f}s"

    async def recover(self) -> str:
        """Wait for the restart begun by the kill.

        Returns:
            ``node restarted: <name>, healthy and current after <s>s``.

        Raises:
            EmbeddedServerError: The node did not come back.
        """
        if self._restart is None:
            return "no node was killed"
        return await self._restart

    async def abandon(self) -> None:
        """Let the restart end, if the demo stopped before `recover` (errors are its own)."""
        if self._restart is not None and not self._restart.done():
            with contextlib.suppress(Exception):
                await self._restart


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables in the block, as a user's ``export`` would, then restore."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@click.command("demo")
@click.option(
    "--agents", default=3, show_default=True, type=click.IntRange(1, 100), help="Worker agents."
)
@click.option(
    "--messages",
    default=20,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Requests and work items per worker.",
)
@click.option(
    "--duration",
    default=90.0,
    show_default=True,
    type=click.FloatRange(1, 3600),
    help="Upper bound on the run, seconds.",
)
def cluster_demo(agents: int, messages: int, duration: float) -> None:
    """Run the demo on a fresh local 3-node cluster and kill the stream leader's node midway."""
    try:
        result = asyncio.run(_demo(agents, messages, duration))
    except ACLBusError as exc:
        raise click.ClickException(str(exc)) from None
    if not result:
        raise click.ClickException(
            "the demo lost or missed messages across the node kill (see above)"
        )


async def _demo(agents: int, messages: int, duration: float) -> bool:
    console = Console()
    async with Cluster(NODES, name="demo", start_timeout=60.0) as cluster:
        console.print(f"cluster 'demo' up: {', '.join(cluster.urls)} (R3 streams)", soft_wrap=True)
        # The backend reads its settings from the environment, as agents pointed at a cluster
        # do: the demo runs exactly as a user's agents would.
        env = {
            "ACLBUS_NATS__SERVERS": ",".join(cluster.urls),
            "ACLBUS_NATS__PUBLISH_TIMEOUT": os.environ.get(
                "ACLBUS_NATS__PUBLISH_TIMEOUT", _PUBLISH_TIMEOUT
            ),
            "ACLBUS_STREAMS__REPLICAS": str(NODES),
            # A delivery or an ack lost with the node comes back in seconds, not in 30.
            "ACLBUS_ACK_WAIT": os.environ.get("ACLBUS_ACK_WAIT", _ACK_WAIT),
        }
        with _environment(env):
            settings = Settings(backend="nats", data_dir=None)
            stream = Subjects(settings.subject_prefix).stream(TrafficClass.INBOX)
            fault = LeaderKill(cluster, stream)
            try:
                result = await run_demo(
                    settings, agents=agents, messages=messages, duration=duration, fault=fault
                )
            finally:
                await fault.abandon()  # before the cluster stops: no restart left running
    console.print("cluster 'demo' stopped")
    return result.ok and result.fault is not None and result.fault.resumed_after is not None
