"""The server's OS process: started so that it dies with us, stopped by its own PID.

Why the server cannot outlive this process, on Linux: the child asks the kernel, between
fork and exec, for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``). We chose this
over ``start_new_session`` plus a watchdog process because the kernel delivers the signal
however the parent dies -- SIGKILL, OOM killer, a crash in C code -- while a watchdog is one
more process that can itself be killed first (``kill -9`` of a process group takes it too)
and needs a pipe, a poll loop and an interpreter start per server.

Its one trap: "parent" means the *thread* that forked, not the process. A server started
from a worker thread (``asyncio.to_thread``, an executor, a test-timeout thread) would get
SIGTERM when that thread ends. So every server is forked by one long-lived daemon thread
that lasts as long as the process.

The server also gets a session of its own: a Ctrl-C in a terminal signals the whole
foreground process group, and the server must not die before the Python code that owns it
has closed its connections; the owner stops it (context manager, ``atexit``, and the death
signal above as the last resort).

The death signal is SIGTERM, not SIGKILL, so that the server writes out what it has
buffered; the price is that a server frozen by SIGSTOP (a fault test) when its parent dies
stays frozen, with the signal pending, until someone sends it SIGCONT.

Elsewhere than Linux there is no death signal; ``atexit`` still stops the server on every
orderly exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any, TypeVar

__all__ = [
    "HOST",
    "aterminate",
    "log_tail",
    "open_lock",
    "pid_alive",
    "reserve_port",
    "spawn",
    "terminate",
]

HOST = "127.0.0.1"
"""Every listener of an embedded server binds here: loopback only."""

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_T = TypeVar("_T")
_POLL_INTERVAL = 0.01


def _load_prctl() -> Callable[..., int] | None:
    # Resolved in the parent: a child between fork and exec should call, not dlopen.
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return prctl


_prctl = _load_prctl()


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """Build the ``preexec_fn`` that ties the child's life to ours (Linux only)."""
    prctl = _prctl
    if prctl is None:
        return None

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        # The parent may have died between fork and prctl: then nobody will signal us.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


class _Spawner:
    """One daemon thread that forks every server, so that "parent" means "this process".

    Daemon threads end only when the process exits, which is exactly when the servers must go.
    """

    def __init__(self) -> None:
        self._reset()
        # After os.fork() the child has no spawning thread, and perhaps a lock held by a
        # thread that no longer exists there: start afresh.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def run(self, job: Callable[[], _T]) -> _T:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._serve, name="aclbus-nats-spawner", daemon=True
                )
                self._thread.start()
        done: Future[_T] = Future()
        self._jobs.put((job, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            job, done = self._jobs.get()
            try:
                done.set_result(job())
            except BaseException as exc:
                done.set_exception(exc)


_spawner = _Spawner()


def spawn(
    argv: Sequence[str],
    *,
    output: Path,
    marker: str = "",
    keep_fds: Sequence[int] = (),
    on_spawned: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a server process that dies when this process dies (see the module docstring).

    Args:
        argv: The command line.
        output: File that receives the child's stdout and stderr (appended to): whatever the
            server prints before it opens its own log, a config parse error or a Go panic.
        marker: A line written to ``output`` before the child starts (see `log_tail`).
        keep_fds: File descriptors the child inherits (a lock on its store dir).
        on_spawned: Called with the process in the spawning thread, before this returns, so
            that an interrupted caller still learns about the process it asked for.

    Returns:
        The running process.
    """
    parent_pid = os.getpid()

    def job() -> subprocess.Popen[bytes]:
        with open(output, "ab") as sink:
            if marker:
                sink.write(f"{marker}\n".encode())
                sink.flush()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                close_fds=True,
                pass_fds=tuple(keep_fds),
                start_new_session=True,
                preexec_fn=_die_with_parent(parent_pid),
            )
        if on_spawned is not None:
            on_spawned(proc)
        return proc

    return _spawner.run(job)


def reserve_port(host: str = HOST) -> int:
    """Return a free TCP port that the kernel will not hand out again for about a minute.

    Binding to port 0 and closing leaves a window in which any other process asking for an
    ephemeral port may get the same one. Here a connection is made and closed on the port
    first: the port then sits in TIME_WAIT, which keeps ``bind(port 0)`` callers away from
    it, while nats-server (Go sets SO_REUSEADDR on listeners) can still listen on it.

    Args:
        host: The address to reserve on.

    Returns:
        The port number.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, 0))
        listener.listen(1)
        address = listener.getsockname()
        with socket.create_connection(address, timeout=5):
            accepted, _ = listener.accept()
            # Closing the accepted side first puts *its* end, the one on our port, in TIME_WAIT.
            accepted.close()
        port: int = address[1]
        return port


def pid_alive(pid: int) -> bool:
    """Whether a process exists and has not exited (a zombie counts as gone).

    Args:
        pid: The process id.

    Returns:
        True while the process runs (or is stopped).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        # The state follows the command name, which is in parentheses and may contain spaces.
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    return True


def terminate(procs: Sequence[subprocess.Popen[bytes]], grace: float) -> None:
    """Stop processes by their own PIDs: SIGTERM, wait up to ``grace`` seconds, then SIGKILL.

    Stopped (SIGSTOP) processes are continued first, or SIGTERM would wait for a SIGCONT that
    never comes. All processes get SIGTERM before any is waited for, so a cluster shuts down
    in one grace period, not one per node. Returns once every process has been reaped.

    Args:
        procs: The processes.
        grace: Seconds to wait for a clean exit before SIGKILL.
    """
    live = [p for p in procs if p.poll() is None]
    for proc in live:
        _signal(proc, signal.SIGCONT)
        _signal(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    try:
        for proc in live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    finally:
        # Also on KeyboardInterrupt during the wait: a second Ctrl-C must not leave a server.
        for proc in live:
            if proc.poll() is None:
                _signal(proc, signal.SIGKILL)
                proc.wait()


async def aterminate(procs: Sequence[subprocess.Popen[bytes]], grace: float) -> None:
    """`terminate`, waiting without blocking the event loop.

    Args:
        procs: The processes.
        grace: Seconds to wait for a clean exit before SIGKILL.
    """
    live = [p for p in procs if p.poll() is None]
    for proc in live:
        _signal(proc, signal.SIGCONT)
        _signal(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    try:
        # Polling: asyncio's child watchers would need the loop to own these processes.
        while any(p.poll() is None for p in live) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(_POLL_INTERVAL)
    finally:
        # Also when cancelled: a cancelled stop must still leave no server behind.
        for proc in live:
            if proc.poll() is None:
                _signal(proc, signal.SIGKILL)
                proc.wait()


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    # Popen.send_signal checks that the child has not been reaped, so a recycled PID
    # belonging to someone else is never signalled.
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)


def log_tail(path: Path, lines: int = 25, *, since: str | None = None) -> str:
    """The last lines of a log file, or an empty string if there is none.

    Args:
        path: The log file.
        lines: How many lines at most.
        since: Only lines after the last line that starts with this (a start marker), so that
            an error shows this run's log, not the previous run's.

    Returns:
        The lines, joined by newlines.
    """
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 16_384))
            text = log.read().decode("utf-8", "replace")
    except OSError:
        return ""
    found = text.splitlines()
    if since is not None:
        starts = [i for i, line in enumerate(found) if line.startswith(since)]
        if starts:
            found = found[starts[-1] + 1 :]
    return "\n".join(found[-lines:])


def open_lock(path: Path) -> IO[bytes]:
    """Open ``path`` and take an exclusive, non-blocking ``flock`` on it.

    Args:
        path: The lock file (created if missing).

    Returns:
        The open file; the lock lasts while it, or a copy inherited by a child, stays open.

    Raises:
        BlockingIOError: Another open file holds the lock.
    """
    lock = open(path, "a+b")  # noqa: SIM115 -- returned to the caller, who owns it
    try:
        import fcntl
    except ImportError:  # not POSIX: no flock; the store dir goes unguarded there
        return lock
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        lock.close()
        raise
    return lock
