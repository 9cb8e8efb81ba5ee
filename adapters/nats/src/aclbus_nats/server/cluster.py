"""`Cluster`: N routed nats-servers with clustered JetStream on loopback, for tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from aclbus import ConfigurationError
from aclbus_nats.server import monitor
from aclbus_nats.server.embedded import EmbeddedServer
from aclbus_nats.server.errors import EmbeddedServerError
from aclbus_nats.server.process import HOST, aterminate, log_tail, reserve_port, terminate

__all__ = ["Cluster"]

_POLL_INTERVAL = 0.05
_PROBE_TIMEOUT = 0.5


class Cluster:
    """N nats-servers routed to each other on 127.0.0.1, with clustered JetStream.

    Each node is an `EmbeddedServer` named ``<name>-<i>`` with its own ports and store dir;
    the route ports are fixed at the first start, so a node restarts where it was and the
    others take it back. `start` returns once every node is healthy and agrees on a
    JetStream meta leader.

    Example::

        with Cluster(3) as cluster:
            nc = await nats.connect(servers=cluster.urls)
            ...
            cluster.kill(cluster.index_of(info.cluster.leader))  # SIGKILL the stream leader
            cluster.restart(i)

    Args:
        size: Number of nodes; at least 2 (an R3 stream needs 3).
        name: The cluster's name; nodes are ``<name>-0``, ``<name>-1``, ...
        store_dir: A root under which each node keeps ``<node name>/``; temporary dirs,
            removed by `stop`, when not given.
        extra_config: A raw config fragment appended to every node's config (``tls {}``,
            ``authorization {}``, ...).
        cluster_config: A raw fragment placed inside every node's ``cluster {}`` block (route
            TLS, ``pool_size``, ...).
        sync_always: Fsync every JetStream write on every node (``sync_interval: always``),
            needed for no acknowledged loss when the whole cluster crashes at once.
        validate: Check each generated config with ``nats-server -t`` before starting.
        binary: An explicit nats-server executable (see `find_binary`).
        start_timeout: Seconds `start` waits for health and a meta leader, and `restart`
            for the restarted node.
        stop_timeout: Seconds `stop` waits after SIGTERM before SIGKILL.

    Raises:
        ConfigurationError: ``size`` is below 2.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        name: str = "aclbus",
        store_dir: str | os.PathLike[str] | None = None,
        extra_config: str = "",
        cluster_config: str = "",
        sync_always: bool = False,
        validate: bool = False,
        binary: str | os.PathLike[str] | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 5.0,
    ) -> None:
        if size < 2:
            # One clustered node refuses to start JetStream without routes.
            raise ConfigurationError(f"a Cluster needs at least 2 nodes, got size={size!r}")
        self._size = size
        self._name = name
        self._root = Path(store_dir).expanduser().absolute() if store_dir else None
        self._extra_config = extra_config
        self._cluster_config = cluster_config
        self._sync_always = sync_always
        self._validate = validate
        self._binary = binary
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._nodes: list[EmbeddedServer] = []
        self._route_ports: list[int] = []
        self._has_run = False

    @property
    def name(self) -> str:
        """The cluster's name."""
        return self._name

    @property
    def size(self) -> int:
        """Number of nodes."""
        return self._size

    @property
    def nodes(self) -> tuple[EmbeddedServer, ...]:
        """The nodes, in order (empty before the first start)."""
        return tuple(self._nodes)

    @property
    def urls(self) -> list[str]:
        """Every node's client URL, for ``nats.connect(servers=...)``."""
        return [node.url for node in self._nodes]

    def index_of(self, server_name: str) -> int:
        """The index of the node with this server name (as in ``stream_info().cluster.leader``).

        Args:
            server_name: The node's server name.

        Returns:
            Its index, for `kill` and `restart`.

        Raises:
            EmbeddedServerError: No node has that name.
        """
        for i, node in enumerate(self._nodes):
            if node.server_name == server_name:
                return i
        names = ", ".join(node.server_name for node in self._nodes) or "none started"
        raise EmbeddedServerError(f"no node named {server_name!r} in cluster (nodes: {names})")

    def meta_leader(self) -> str | None:
        """The JetStream meta leader's server name, as the first answering node reports it.

        Returns:
            The name, or None while there is none (an election, or quorum lost).
        """
        for node in self._nodes:
            if not node.running:
                continue
            try:
                jsz = monitor.get_json(node.monitor_port, "/jsz", _PROBE_TIMEOUT)
            except OSError:
                continue
            leader = (jsz.get("meta_cluster") or {}).get("leader")
            if leader:
                return str(leader)
        return None

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> Self:
        """Start every node that is not running, and wait for health and a meta leader.

        Also the way back from a whole-cluster crash: the nodes come back on the same ports
        and stores.

        Returns:
            This cluster.

        Raises:
            EmbeddedServerError: A node failed, or the cluster did not become healthy with a
                meta leader within ``start_timeout``; the message names each node's problem
                with its log. A first start leaves nothing behind; a later one stops the
                nodes and keeps their stores.
        """
        deadline = time.monotonic() + self._start_timeout
        try:
            self._launch_missing()
            for node in self._nodes:
                node.wait_healthy(monitor.JS_READY, deadline)
            while not self._check_meta(self._nodes, deadline):
                time.sleep(_POLL_INTERVAL)
        except BaseException:
            self._abort()
            raise
        self._has_run = True
        return self

    async def astart(self) -> Self:
        """`start`, waiting without blocking the event loop.

        Returns:
            This cluster.

        Raises:
            EmbeddedServerError: As `start`.
        """
        deadline = time.monotonic() + self._start_timeout
        try:
            self._launch_missing()
            for node in self._nodes:
                await node.await_healthy(monitor.JS_READY, deadline)
            # Polling, not an Event: the state lives in other processes, behind HTTP.
            while not await asyncio.to_thread(self._check_meta, self._nodes, deadline):  # noqa: ASYNC110
                await asyncio.sleep(_POLL_INTERVAL)
        except BaseException:
            self._abort()
            raise
        self._has_run = True
        return self

    def stop(self) -> None:
        """Stop every node at once (SIGTERM, then SIGKILL) and remove temporary stores."""
        try:
            terminate(self._procs(), self._stop_timeout)
        finally:
            for node in self._nodes:
                node.stop()

    async def astop(self) -> None:
        """`stop`, waiting without blocking the event loop."""
        try:
            await aterminate(self._procs(), self._stop_timeout)
        finally:
            for node in self._nodes:
                node.stop()

    def kill(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Send a signal to one node (see `EmbeddedServer.kill`).

        Args:
            index: The node's index.
            sig: The signal; SIGKILL by default.

        Raises:
            EmbeddedServerError: That node is not running.
        """
        self._node(index).kill(sig)

    def restart(self, index: int) -> EmbeddedServer:
        """Stop one node (SIGTERM) if it runs, start it again, and wait until it is healthy.

        Healthy means current with the meta leader and with every stream and consumer it
        holds, so the cluster needs a quorum for this to return.

        Args:
            index: The node's index.

        Returns:
            The node.

        Raises:
            EmbeddedServerError: The node did not become healthy within ``start_timeout``;
                it is stopped again, its store kept.
        """
        node = self._node(index)
        node.halt()
        deadline = time.monotonic() + self._start_timeout
        try:
            node.launch()
            node.wait_healthy(monitor.JS_READY, deadline)
            while not self._check_meta([node], deadline):
                time.sleep(_POLL_INTERVAL)
        except BaseException:
            node.halt()
            raise
        return node

    async def arestart(self, index: int) -> EmbeddedServer:
        """`restart`, waiting without blocking the event loop.

        Args:
            index: The node's index.

        Returns:
            The node.

        Raises:
            EmbeddedServerError: As `restart`.
        """
        node = self._node(index)
        if node.running:
            await aterminate(self._procs([node]), self._stop_timeout)
        try:
            await self._join(node)
        except BaseException:
            node.halt()
            raise
        return node

    async def _join(self, node: EmbeddedServer) -> None:
        """Launch ``node``; wait until it is healthy and current in the meta group.

        Within ``start_timeout``; `EmbeddedServerError` past it.
        """
        deadline = time.monotonic() + self._start_timeout
        node.launch()
        await node.await_healthy(monitor.JS_READY, deadline)
        while not await asyncio.to_thread(self._check_meta, [node], deadline):  # noqa: ASYNC110
            await asyncio.sleep(_POLL_INTERVAL)

    async def aadd_node(self) -> EmbeddedServer:
        """Start one more node, routed to the others, and wait until the cluster counts it.

        The running nodes learn its route from it (routes gossip); it is ``<name>-<size>``,
        and the cluster's `size` grows by one. Streams do not move to it by themselves: a
        stream's peer removed (``$JS.API.STREAM.PEER.REMOVE``) is replaced by a free node.

        Returns:
            The new node.

        Raises:
            EmbeddedServerError: The cluster has not been started, or the node did not
                become healthy and counted within ``start_timeout``; it is stopped and
                removed again.
        """
        if not self._nodes:
            raise EmbeddedServerError(f"{self!r} has not been started")
        port = reserve_port()
        self._route_ports.append(port)
        node = self._make_node(len(self._nodes), port)
        self._nodes.append(node)
        self._size += 1
        try:
            await self._join(node)
        except BaseException:
            node.stop()  # and forget it: the cluster is as it was
            self._nodes.pop()
            self._route_ports.pop()
            self._size -= 1
            raise
        return node

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()

    def __repr__(self) -> str:
        up = sum(node.running for node in self._nodes)
        return f"<Cluster {self._name!r} {up}/{self._size} nodes running>"

    # -- internals ---------------------------------------------------------------------

    def _node(self, index: int) -> EmbeddedServer:
        if not self._nodes:
            raise EmbeddedServerError(f"{self!r} has not been started")
        try:
            return self._nodes[index]
        except IndexError:
            raise EmbeddedServerError(
                f"no node {index} in {self!r} (indexes 0..{self._size - 1})"
            ) from None

    def _procs(
        self, nodes: Sequence[EmbeddedServer] | None = None
    ) -> list[subprocess.Popen[bytes]]:
        return [
            n.process for n in (self._nodes if nodes is None else nodes) if n.process is not None
        ]

    def _launch_missing(self) -> None:
        if not self._nodes:
            self._nodes = self._build_nodes()
        for node in self._nodes:
            if not node.running:
                node.launch()

    def _build_nodes(self) -> list[EmbeddedServer]:
        self._route_ports = [reserve_port() for _ in range(self._size)]
        return [self._make_node(i, port) for i, port in enumerate(self._route_ports)]

    def _make_node(self, i: int, own_port: int) -> EmbeddedServer:
        def q(value: str) -> str:
            return json.dumps(value, ensure_ascii=False)

        routes = [f"nats-route://{HOST}:{p}" for p in self._route_ports if p != own_port]
        block = [
            "cluster {",
            f"  name: {q(self._name)}",
            f"  listen: {q(f'{HOST}:{own_port}')}",
            f"  routes: [{', '.join(q(route) for route in routes)}]",
        ]
        if self._cluster_config.strip():
            block.append(self._cluster_config.strip())
        block.append("}")
        extra = "\n".join(block)
        if self._extra_config.strip():
            extra += "\n\n" + self._extra_config.strip()
        node_name = f"{self._name}-{i}"
        return EmbeddedServer(
            store_dir=self._root / node_name if self._root else None,
            server_name=node_name,
            extra_config=extra,
            sync_always=self._sync_always,
            validate=self._validate,
            binary=self._binary,
            start_timeout=self._start_timeout,
            stop_timeout=self._stop_timeout,
        )

    def _check_meta(self, nodes: Sequence[EmbeddedServer], deadline: float) -> bool:
        """Probe once: True when every node is healthy and sees a meta leader.

        Raises if a node died or time ran out.
        """
        problems: list[str] = []
        for node in nodes:
            if not node.running:
                raise node.failure("nats-server exited while the cluster was forming")
            problem = self._meta_problem(node)
            if problem:
                problems.append(f"{node.server_name}: {problem}")
        if not problems:
            return True
        if time.monotonic() >= deadline:
            details = "\n".join(problems)
            tails = "\n".join(
                f"--- {node.server_name} ---\n{log_tail(node.log_path, 8)}" for node in nodes
            )
            raise EmbeddedServerError(
                f"cluster {self._name!r} not ready in time:\n{details}", log_tail=tails
            )
        return False

    def _meta_problem(self, node: EmbeddedServer) -> str:
        try:
            status, body = monitor.get(node.monitor_port, monitor.FULL_HEALTH, _PROBE_TIMEOUT)
            if status != 200:
                return f"/healthz said {status} {body.strip()}"
            meta = monitor.get_json(node.monitor_port, "/jsz", _PROBE_TIMEOUT).get("meta_cluster")
        except OSError as exc:
            return str(exc) or type(exc).__name__
        if not meta or not meta.get("leader"):
            return "no JetStream meta leader yet"
        seen = meta.get("cluster_size") or 0
        if seen < self._size:
            return f"meta group has {seen} of {self._size} nodes"
        return ""

    def _abort(self) -> None:
        if self._has_run:
            # A cluster coming back from a crash: its stores hold the data, keep them.
            terminate(self._procs(), self._stop_timeout)
        else:
            self.stop()
