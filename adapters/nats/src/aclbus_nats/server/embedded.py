"""`EmbeddedServer`: one nats-server with JetStream on loopback, owned by this process."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Self, TypeVar

from aclbus_nats.server import monitor
from aclbus_nats.server.binary import ServerBinary, check_config, find_binary
from aclbus_nats.server.errors import EmbeddedServerError, StoreDirInUse
from aclbus_nats.server.process import (
    HOST,
    aterminate,
    log_tail,
    open_lock,
    reserve_port,
    spawn,
    terminate,
)

__all__ = ["EmbeddedServer", "default_data_dir"]

CONFIG_NAME = "nats-server.conf"
LOG_NAME = "nats-server.log"
LOCK_NAME = "aclbus-nats.lock"
_MARKER = "[aclbus] starting nats-server"
_POLL_INTERVAL = 0.02
_T = TypeVar("_T")
_PROBE_TIMEOUT = 0.5


def default_data_dir() -> Path:
    """The per-user persistent data dir of the embedded server (not created here).

    ``$XDG_DATA_HOME/aclbus/nats``, or ``~/.local/share/aclbus/nats`` when ``XDG_DATA_HOME``
    is unset or (against the XDG spec) relative. Use it as
    ``EmbeddedServer(store_dir=default_data_dir())`` to keep streams between runs.

    Returns:
        The directory path.
    """
    base = os.environ.get("XDG_DATA_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"
    return root / "aclbus" / "nats"


class EmbeddedServer:
    """A nats-server process with JetStream, listening on 127.0.0.1 only.

    Free ports are picked unless given, and kept across `restart`. The store dir holds the
    generated config (``nats-server.conf``), the log (``nats-server.log``) and JetStream's
    data (``jetstream/``); without ``store_dir`` it is a temporary dir removed by `stop`.
    A lock file keeps a second server off a store dir that is in use.

    The process never outlives this one: `stop` on leaving the ``with`` block (also on
    Ctrl-C), on `atexit`, and on Linux a kernel death signal if this process is killed.
    Not thread-safe: drive one instance from one thread or one event loop.

    Example::

        with EmbeddedServer() as server:
            nc = await nats.connect(server.url)

        async with EmbeddedServer(store_dir=default_data_dir()) as server:
            ...

    Args:
        store_dir: Where the server keeps its data; created if missing. A temporary dir,
            removed by `stop`, when not given.
        port: Client port; a free one when not given.
        monitor_port: HTTP monitoring port; a free one when not given.
        server_name: The server's name (``server_name``), as stream infos report it.
        extra_config: A raw nats-server config fragment appended to the generated file, for
            blocks such as ``tls { ... }`` or ``authorization { ... }``.
        sync_always: Fsync every JetStream write (``sync_interval: always``): no acknowledged
            message lost even if the machine crashes, at a large cost in throughput.
        validate: Check the generated config with ``nats-server -t`` before starting.
        binary: An explicit nats-server executable (see `find_binary`).
        start_timeout: Seconds `start` waits for the server to report JetStream healthy.
        stop_timeout: Seconds `stop` waits after SIGTERM before SIGKILL.
    """

    def __init__(
        self,
        *,
        store_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        monitor_port: int | None = None,
        server_name: str = "aclbus",
        extra_config: str = "",
        sync_always: bool = False,
        validate: bool = False,
        binary: str | os.PathLike[str] | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self._given_store = Path(store_dir).expanduser().absolute() if store_dir else None
        self._port = port
        self._monitor_port = monitor_port
        self._server_name = server_name
        self._extra_config = extra_config
        self._sync_always = sync_always
        self._validate = validate
        self._binary_arg = binary
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._binary: ServerBinary | None = None
        self._temp_store: Path | None = None
        self._lock: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- properties --------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Client URL, ``nats://127.0.0.1:<port>``."""
        return f"nats://{HOST}:{self.port}"

    @property
    def monitor_url(self) -> str:
        """Monitoring URL, ``http://127.0.0.1:<monitor_port>``."""
        return f"http://{HOST}:{self.monitor_port}"

    @property
    def port(self) -> int:
        """Client port (known once given or started)."""
        return self._known(self._port, "its client port")

    @property
    def monitor_port(self) -> int:
        """HTTP monitoring port (known once given or started)."""
        return self._known(self._monitor_port, "its monitoring port")

    @property
    def pid(self) -> int:
        """PID of the server process: the current one, or the last one after it stopped."""
        if self._proc is None:
            raise self._not_started("its pid")
        return self._proc.pid

    @property
    def running(self) -> bool:
        """Whether the process exists and has not exited (a SIGSTOPped server is running)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def store_dir(self) -> Path:
        """The data dir: config, log, and JetStream's ``jetstream/`` store."""
        return self._known(self._given_store or self._temp_store, "its store dir")

    @property
    def log_path(self) -> Path:
        """The server's log file (its stdout and stderr go there too)."""
        return self.store_dir / LOG_NAME

    @property
    def config_path(self) -> Path:
        """The generated configuration file, rewritten at every start."""
        return self.store_dir / CONFIG_NAME

    @property
    def server_name(self) -> str:
        """The server's name."""
        return self._server_name

    @property
    def version(self) -> str:
        """Version of the nats-server binary, e.g. ``"2.15.1"``.

        Raises:
            EmbeddedServerError: No usable binary (see `find_binary`).
        """
        if self._binary is None:
            self._binary = find_binary(self._binary_arg)
        return self._binary.version_text

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server and wait until it reports JetStream enabled.

        Returns:
            This server, so that ``server = EmbeddedServer().start()`` works.

        Raises:
            EmbeddedServerError: Already running; no usable binary; an invalid config; the
                store dir is in use; or the server exited or stayed unhealthy for
                ``start_timeout`` seconds. The message ends with the server's last log lines.
                Nothing is left behind: the process is gone and a temporary store removed.
        """
        self._refuse_if_running()
        try:
            self.launch()
            self.wait_healthy(monitor.JS_READY, time.monotonic() + self._start_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    async def astart(self) -> Self:
        """`start`, waiting without blocking the event loop.

        The spawn itself runs inline: it takes milliseconds (tens with ``validate``).

        Returns:
            This server.

        Raises:
            EmbeddedServerError: As `start`.
        """
        self._refuse_if_running()
        try:
            self.launch()
            await self.await_healthy(monitor.JS_READY, time.monotonic() + self._start_timeout)
        except BaseException:
            # Synchronous on purpose: a second cancellation must not interrupt the cleanup.
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL after ``stop_timeout``).

        Also removes a temporary store dir and releases the store lock. Safe to call twice,
        on a server that never started, and on one that was killed.
        """
        try:
            if self._proc is not None:
                terminate([self._proc], self._stop_timeout)
        finally:
            self._release()

    async def astop(self) -> None:
        """`stop`, waiting without blocking the event loop."""
        try:
            if self._proc is not None:
                await aterminate([self._proc], self._stop_timeout)
        finally:
            self._release()

    def restart(self) -> Self:
        """Stop the server (SIGTERM) if it runs, and start it again.

        Ports, store dir and config stay the same, so stored streams and messages survive
        and clients reconnect to the same URL.

        Returns:
            This server.

        Raises:
            EmbeddedServerError: As `start`. The store is kept for a later `start`.
        """
        self.halt()
        try:
            self.launch()
            self.wait_healthy(monitor.JS_READY, time.monotonic() + self._start_timeout)
        except BaseException:
            self.halt()
            raise
        return self

    async def arestart(self) -> Self:
        """`restart`, waiting without blocking the event loop.

        Returns:
            This server.

        Raises:
            EmbeddedServerError: As `start`. The store is kept for a later `start`.
        """
        if self._proc is not None:
            await aterminate([self._proc], self._stop_timeout)
        try:
            self.launch()
            await self.await_healthy(monitor.JS_READY, time.monotonic() + self._start_timeout)
        except BaseException:
            self.halt()
            raise
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send a signal to the server, for fault tests.

        SIGKILL is a crash (the process is reaped before this returns); SIGSTOP freezes the
        server and SIGCONT thaws it; SIGTERM is a clean shutdown; SIGUSR2 enters lame duck
        mode. `restart` (or `start`) brings a killed server back on the same store.

        Args:
            sig: The signal.

        Raises:
            EmbeddedServerError: The server is not running.
        """
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise EmbeddedServerError(f"cannot send signal {sig} to {self!r}: it is not running")
        proc.send_signal(sig)
        if sig == signal.SIGKILL:
            proc.wait(timeout=self._stop_timeout)

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
        where = f"{HOST}:{self._port}" if self._port else "no port yet"
        if self._proc is None:
            state = "not started"
        elif self._proc.poll() is None:
            state = f"pid {self._proc.pid}"
        else:
            state = f"exited ({self._proc.returncode})"
        return f"<EmbeddedServer {self._server_name!r} {where} {state}>"

    # -- the steps of start and restart, for whoever starts several servers at once -----
    #
    # `Cluster` launches every node before it waits for any (a clustered node is healthy only
    # once its routes are up), so these steps are public rather than inside `start`.

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The server process: the current one, or the last one after it stopped."""
        return self._proc

    def _refuse_if_running(self) -> None:
        if self.running:
            raise EmbeddedServerError(f"{self!r} is already running")

    def launch(self) -> None:
        """Write the config and spawn the process; do not wait for it (see `wait_healthy`).

        Raises:
            EmbeddedServerError: Already running; no usable binary; an invalid config; the
                store dir is in use; or the process could not be spawned.
        """
        self._refuse_if_running()
        self._binary = find_binary(self._binary_arg)
        store = self._given_store or self._temp_store
        if store is None:
            store = self._temp_store = Path(tempfile.mkdtemp(prefix="aclbus-nats-"))
        # Streams hold agents' messages and extra_config may hold passwords: owner only.
        store.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._lock is None:
            try:
                self._lock = open_lock(store / LOCK_NAME)
            except BlockingIOError:
                raise StoreDirInUse(
                    f"store dir {str(store)!r} is in use by another nats-server: two servers "
                    "writing one JetStream store corrupt it. Stop the other one, or give this "
                    "one another store_dir"
                ) from None
        if self._port is None:
            self._port = reserve_port()
        if self._monitor_port is None:
            self._monitor_port = reserve_port()
        config = store / CONFIG_NAME
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8") as out:
            out.write(self._render_config(store))
        if self._validate:
            verdict = check_config(config, binary=self._binary.path)
            if not verdict.valid:
                raise EmbeddedServerError(f"invalid nats-server config {config}: {verdict.message}")
        _live.add(self)
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        try:
            spawn(
                [str(self._binary.path), "-c", str(config)],
                output=store / LOG_NAME,
                marker=f"{_MARKER} {self._binary.version_text} at {stamp}",
                keep_fds=[self._lock.fileno()],
                on_spawned=self._adopt,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise EmbeddedServerError(f"cannot start {self._binary.path}: {exc}") from exc

    def _adopt(self, proc: subprocess.Popen[bytes]) -> None:
        # Called in the spawning thread, so that an interrupted start still knows its process.
        self._proc = proc

    def _render_config(self, store: Path) -> str:
        def q(value: object) -> str:
            return json.dumps(str(value), ensure_ascii=False)

        jetstream = [f"  store_dir: {q(store)}"]
        if self._sync_always:
            jetstream.append("  sync_interval: always")
        lines = [
            "# Written by aclbus_nats.server.EmbeddedServer at every start: edits are lost.",
            f"server_name: {q(self._server_name)}",
            f"listen: {q(f'{HOST}:{self._port}')}",
            f"http: {q(f'{HOST}:{self._monitor_port}')}",
            f"log_file: {q(store / LOG_NAME)}",
            "logtime: true",
            # A persistent store dir lives for months: keep its log bounded.
            "logfile_size_limit: 10MB",
            "logfile_max_num: 3",
            "jetstream {",
            *jetstream,
            "}",
        ]
        if self._extra_config.strip():
            lines += ["", "# extra_config", self._extra_config.strip()]
        return "\n".join(lines) + "\n"

    def _check_healthy(self, path: str, deadline: float) -> bool:
        """Probe once: True when healthy; raises if the process died or time ran out."""
        proc = self._proc
        if proc is None:
            raise self._not_started("its health")
        code = proc.poll()
        if code is not None:
            raise self.failure(f"nats-server exited with code {code} while starting")
        try:
            status, body = monitor.get(self.monitor_port, path, _PROBE_TIMEOUT)
            answer = f"{status} {body.strip()}"
            if status == 200:
                # A port given by the caller may belong to some other nats-server: ours
                # would exit on it, but that one would answer healthy meanwhile.
                theirs = monitor.get_json(self.monitor_port, "/varz", _PROBE_TIMEOUT).get("port")
                if theirs == self._port:
                    return True
                answer = f"another nats-server (client port {theirs}) answers on this port"
        except OSError as exc:
            answer = str(exc) or type(exc).__name__
        if time.monotonic() >= deadline:
            raise self.failure(f"nats-server not healthy in time; {path} said: {answer}")
        return False

    def wait_healthy(self, path: str, deadline: float) -> None:
        """Wait until the monitoring endpoint ``path`` answers healthy.

        Args:
            path: A health endpoint of `aclbus_nats.server.monitor` (``monitor.JS_READY``).
            deadline: The `time.monotonic` time to give up at.

        Raises:
            EmbeddedServerError: The process exited, or it was not healthy by ``deadline``.
        """
        while not self._check_healthy(path, deadline):
            time.sleep(_POLL_INTERVAL)

    async def await_healthy(self, path: str, deadline: float) -> None:
        """`wait_healthy`, waiting without blocking the event loop.

        Raises:
            EmbeddedServerError: As `wait_healthy`.
        """
        # The probe is a blocking HTTP GET (a frozen server would hold the loop), and polling
        # rather than an Event because the state lives in another process, behind HTTP.
        while not await asyncio.to_thread(self._check_healthy, path, deadline):  # noqa: ASYNC110
            await asyncio.sleep(_POLL_INTERVAL)

    def halt(self) -> None:
        """Stop the process, keep the store, the lock and the ports."""
        if self._proc is not None:
            terminate([self._proc], self._stop_timeout)

    def _release(self) -> None:
        _live.discard(self)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        if self._temp_store is not None:
            shutil.rmtree(self._temp_store, ignore_errors=True)
            self._temp_store = None

    def failure(self, problem: str) -> EmbeddedServerError:
        """The error for ``problem`` of this server, with its name, address, pid and log."""
        tail = ""
        if self._given_store or self._temp_store:
            tail = log_tail(self.log_path, since=_MARKER)
        where = f"{self._server_name!r} on {HOST}:{self._port}"
        if self._proc is not None:
            where += f", pid {self._proc.pid}"
        return EmbeddedServerError(f"{where}: {problem} (log: {self._log_hint()})", log_tail=tail)

    def _log_hint(self) -> str:
        if self._temp_store is not None:
            return "in a temporary store dir, removed on stop"
        return str(self.log_path)

    def _not_started(self, what: str) -> EmbeddedServerError:
        return EmbeddedServerError(f"{self!r} has not been started, so {what} is not known yet")

    def _known(self, value: _T | None, what: str) -> _T:
        if value is None:
            raise self._not_started(what)
        return value


# Servers started and not yet stopped, by this process: stopped on interpreter exit.
_live: set[EmbeddedServer] = set()


def _stop_all() -> None:
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.stop()


atexit.register(_stop_all)
# A forked child inherits this set but not the servers: it must never stop its parent's.
os.register_at_fork(after_in_child=_live.clear)
