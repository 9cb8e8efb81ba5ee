"""The embedded nats-server, with real processes on loopback."""

from __future__ import annotations

import asyncio
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import nats
import nats.errors
import pytest

from aclbus import ACLBusError, ConfigurationError
from aclbus_nats.server import (
    BINARY_ENV,
    Cluster,
    EmbeddedServer,
    EmbeddedServerError,
    check_config,
    default_data_dir,
    find_binary,
)
from aclbus_nats.server.process import pid_alive


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return not pid_alive(pid)


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """A line of the child's stdout, without hanging the suite if the child never writes it."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            proc.kill()
            pytest.fail(f"child printed nothing in {timeout} s; stderr: {proc.communicate()[1]}")
    line = proc.stdout.readline()
    if not line:
        pytest.fail(f"child exited with {proc.wait()}; stderr: {proc.communicate()[1]}")
    return line


def spawn_child(code: str, *args: str) -> subprocess.Popen[str]:
    # Its own session, so that a signal to its process group plays a terminal's Ctrl-C.
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stream_name() -> str:
    return f"T{uuid.uuid4().hex[:12]}"


# -- one server ------------------------------------------------------------------------


def test_stop_leaves_no_process_and_no_temporary_store() -> None:
    server = EmbeddedServer().start()
    pid, store = server.pid, server.store_dir
    assert server.running
    assert pid_alive(pid)
    assert (store / "nats-server.log").is_file()

    server.stop()

    assert not pid_alive(pid)
    assert not server.running
    assert not store.exists()
    server.stop()  # twice is fine


def test_two_servers_get_different_free_loopback_ports() -> None:
    with EmbeddedServer() as one, EmbeddedServer() as two:
        ports = {one.port, one.monitor_port, two.port, two.monitor_port}
        assert len(ports) == 4
        assert one.url == f"nats://127.0.0.1:{one.port}"
        assert two.monitor_url == f"http://127.0.0.1:{two.monitor_port}"
        assert one.store_dir != two.store_dir


async def test_jetstream_is_on(nats_url: str) -> None:
    name = stream_name()
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await js.add_stream(name=name, subjects=[f"{name}.>"])
        ack = await js.publish(f"{name}.x", b"hello")
        assert (ack.stream, ack.seq) == (name, 1)
        await js.delete_stream(name)
    finally:
        await nc.close()


def test_server_reports_its_version_and_name(nats_server: EmbeddedServer) -> None:
    assert nats_server.version == find_binary().version_text
    assert find_binary().version >= (2, 11, 0)
    config = nats_server.config_path.read_text()
    assert 'listen: "127.0.0.1:' in config
    assert 'http: "127.0.0.1:' in config


async def test_restart_keeps_ports_and_stored_messages(tmp_path: Path) -> None:
    async with EmbeddedServer(store_dir=tmp_path / "store") as server:
        url, old_pid = server.url, server.pid
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="KEEP", subjects=["keep.>"])  # file storage by default
            for i in range(3):
                await js.publish("keep.x", f"m{i}".encode())
        finally:
            await nc.close()

        await server.arestart()

        assert server.pid != old_pid
        assert not pid_alive(old_pid)
        assert server.url == url
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            info = await js.stream_info("KEEP")
            assert info.state.messages == 3
            assert (await js.get_msg("KEEP", 3)).data == b"m2"
        finally:
            await nc.close()
    assert (tmp_path / "store" / "jetstream").is_dir()  # a given store dir is kept
    # extra_config may carry passwords: only the owner reads the config.
    assert (tmp_path / "store" / "nats-server.conf").stat().st_mode & 0o077 == 0


async def test_extra_config_is_passed_through() -> None:
    extra = 'authorization { token: "s3cret" }'
    async with EmbeddedServer(extra_config=extra, validate=True) as server:
        with pytest.raises(nats.errors.Error, match=r"(?i)authorization"):
            await nats.connect(server.url, allow_reconnect=False, max_reconnect_attempts=0)
        nc = await nats.connect(server.url, token="s3cret")
        assert nc.is_connected
        await nc.close()


def test_sync_restart_after_sigkill_and_stop_of_a_frozen_server() -> None:
    with EmbeddedServer() as server:
        first = server.pid
        server.kill(signal.SIGKILL)
        assert not server.running
        assert not pid_alive(first)
        with pytest.raises(EmbeddedServerError, match="not running"):
            server.kill(signal.SIGTERM)

        server.restart()
        assert server.running

        server.kill(signal.SIGSTOP)
        started = time.monotonic()
        server.stop()
        # SIGCONT before SIGTERM: a clean exit, not the SIGKILL after the grace period.
        assert time.monotonic() - started < 2
        assert not pid_alive(server.pid)


def test_second_server_on_a_store_in_use_is_refused(tmp_path: Path) -> None:
    with EmbeddedServer(store_dir=tmp_path) as first:
        other = EmbeddedServer(store_dir=tmp_path)
        with pytest.raises(EmbeddedServerError, match="in use by another nats-server"):
            other.start()
        assert first.running
    with EmbeddedServer(store_dir=tmp_path):  # free again once the first one stopped
        pass


# -- errors ----------------------------------------------------------------------------


def test_invalid_config_is_refused_by_validation() -> None:
    server = EmbeddedServer(extra_config="no_such_option: 1", validate=True)
    with pytest.raises(EmbeddedServerError, match=r"invalid nats-server config.*no_such_option"):
        server.start()
    assert not server.running


def test_server_that_exits_at_start_gives_its_log() -> None:
    server = EmbeddedServer(extra_config="no_such_option: 1")
    with pytest.raises(EmbeddedServerError, match="exited with code") as caught:
        server.start()
    assert isinstance(caught.value, ACLBusError)
    assert "no_such_option" in caught.value.log_tail
    assert "no_such_option" in str(caught.value)
    assert not pid_alive(server.pid)


@pytest.mark.parametrize("which", ["port", "monitor_port"])
def test_port_in_use_gives_its_log(nats_server: EmbeddedServer, which: str) -> None:
    taken = {which: getattr(nats_server, which)}
    server = EmbeddedServer(start_timeout=5, **taken)  # type: ignore[arg-type]
    with pytest.raises(EmbeddedServerError, match="exited with code") as caught:
        server.start()
    assert "address already in use" in caught.value.log_tail
    assert nats_server.running


def test_missing_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nats-server"
    with pytest.raises(EmbeddedServerError, match="does not exist"):
        EmbeddedServer(binary=missing).start()
    monkeypatch.setenv(BINARY_ENV, str(missing))
    with pytest.raises(EmbeddedServerError, match=BINARY_ENV):
        find_binary()


def test_old_binary_is_refused(tmp_path: Path) -> None:
    old = tmp_path / "nats-server"
    old.write_text("#!/bin/sh\necho 'nats-server: v2.9.10'\n")
    old.chmod(0o755)
    with pytest.raises(EmbeddedServerError, match=r"2\.9\.10.*too old.*>= 2\.11\.0"):
        EmbeddedServer(binary=old).start()


def test_check_config_returns_the_servers_verdict(
    nats_server: EmbeddedServer, tmp_path: Path
) -> None:
    good = check_config(nats_server.config_path)
    assert good.valid, good.message
    assert "is valid" in good.message

    bad = tmp_path / "bad.conf"
    bad.write_text('listen: "127.0.0.1:4222"\njetstream { no_such_option: 1 }\n')
    verdict = check_config(bad)
    assert not verdict.valid
    assert "no_such_option" in verdict.message


def test_default_data_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / "aclbus" / "nats"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / ".local" / "share" / "aclbus" / "nats"


# -- the server never outlives its parent ----------------------------------------------

STARTS_AND_WAITS = """
import sys, time
from aclbus_nats.server import EmbeddedServer
server = EmbeddedServer(store_dir=sys.argv[1]).start()
print(server.pid, flush=True)
time.sleep(60)
"""

WITH_BLOCK = """
import sys, time
from aclbus_nats.server import EmbeddedServer
with EmbeddedServer(store_dir=sys.argv[1]) as server:
    print(server.pid, flush=True)
    time.sleep(60)
"""


def test_server_dies_when_its_parent_is_killed(tmp_path: Path) -> None:
    child = spawn_child(STARTS_AND_WAITS, str(tmp_path))
    server_pid = int(read_line(child, timeout=15))
    try:
        assert pid_alive(server_pid)
        child.kill()  # SIGKILL: no atexit, no finally
        child.wait(timeout=5)
        assert wait_gone(server_pid, timeout=5), "nats-server outlived its killed parent"
    finally:
        if pid_alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)
        child.communicate()


@pytest.mark.parametrize("code", [WITH_BLOCK, STARTS_AND_WAITS], ids=["with-block", "atexit"])
def test_ctrl_c_leaves_no_server(tmp_path: Path, code: str) -> None:
    child = spawn_child(code, str(tmp_path))
    server_pid = int(read_line(child, timeout=15))
    try:
        os.killpg(child.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        _, stderr = child.communicate(timeout=10)
        assert "KeyboardInterrupt" in stderr
        # Checked at once: the parent stopped the server before exiting, it did not leave it
        # to the death signal.
        assert not pid_alive(server_pid)
    finally:
        if pid_alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)
        if child.poll() is None:
            child.kill()
            child.communicate()


# -- the pytest fixtures ---------------------------------------------------------------

INNER_CONFTEST = """
import os
from aclbus_nats.server.process import pid_alive

def pytest_unconfigure(config):
    # After every fixture's teardown, before the interpreter exits (atexit, death signal).
    pids = open(os.environ["ACLBUS_TEST_PIDS"]).read().split()
    with open(os.environ["ACLBUS_TEST_ALIVE"], "w") as out:
        out.write(" ".join(str(pid_alive(int(pid))) for pid in pids))
"""

INNER_TEST = """
import os

def test_fails(nats_server, nats_url, nats_cluster):
    pids = [nats_server.pid] + [node.pid for node in nats_cluster.nodes]
    with open(os.environ["ACLBUS_TEST_PIDS"], "w") as out:
        out.write(" ".join(map(str, pids)))
    assert nats_url == nats_server.url
    assert False, "this test fails on purpose"
"""


def test_fixtures_stop_their_servers_when_a_test_fails(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(INNER_CONFTEST)
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    env = {
        **os.environ,
        "ACLBUS_TEST_PIDS": str(tmp_path / "pids"),
        "ACLBUS_TEST_ALIVE": str(tmp_path / "alive"),
    }
    plugins = ["-p", "no:cacheprovider"]  # the fixtures come from the pytest11 entry point
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *plugins, "-q", "--rootdir", str(tmp_path), "."],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "this test fails on purpose" in run.stdout
    assert (tmp_path / "alive").read_text() == " ".join(["False"] * 4)


# -- a 3-node cluster ------------------------------------------------------------------


def test_cluster_needs_two_nodes() -> None:
    with pytest.raises(ConfigurationError, match="at least 2"):
        Cluster(1)


async def test_cluster_loses_no_acked_message_when_the_stream_leader_is_killed(
    nats_cluster: Cluster,
) -> None:
    cluster = nats_cluster
    names = {node.server_name for node in cluster.nodes}
    assert len(names) == 3
    assert cluster.meta_leader() in names
    assert all(url.startswith("nats://127.0.0.1:") for url in cluster.urls)

    nc = await nats.connect(
        servers=cluster.urls, reconnect_time_wait=0.1, max_reconnect_attempts=-1
    )
    js = nc.jetstream(timeout=1.0)
    acked: set[str] = set()
    down: int | None = None

    async def publish(i: int, within: float = 5.0) -> float:
        """Publish m<i> until its PubAck, retrying with the same message id (as clients must)."""
        started = time.monotonic()
        while True:
            try:
                await js.publish("r3.x", f"m{i}".encode(), headers={"Nats-Msg-Id": f"m{i}"})
            except (TimeoutError, nats.errors.Error):
                if time.monotonic() - started > within:
                    raise
                await asyncio.sleep(0.1)
            else:
                acked.add(f"m{i}")
                return time.monotonic() - started

    try:
        await js.add_stream(name="R3", subjects=["r3.>"], num_replicas=3)
        await publish(0)
        assert (await js.get_msg("R3", 1)).data == b"m0"
        for i in range(1, 20):
            await publish(i)

        # Elections are randomized (4-9 s) and a split vote costs another round, so R8 and
        # SCENARIOS promise p99 <= 10 s, not p100. One sample over 10 s earns one more trial;
        # two in a row fail (about 1 run in 1000 if p99 holds; always if recovery is slow).
        recoveries: list[float] = []
        for trial in range(2):
            leader = (await js.stream_info("R3")).cluster.leader
            assert leader in names
            down = cluster.index_of(leader)
            cluster.kill(down, signal.SIGKILL)
            recoveries.append(await publish(20 + trial, within=20))
            print(f"\nSIGKILL of stream leader {leader}: next PubAck after {recoveries[-1]:.2f} s")
            started = time.monotonic()
            await cluster.arestart(down)
            down = None
            print(f"{leader} back and current after {time.monotonic() - started:.2f} s")
            if recoveries[-1] <= 10:
                break
        assert recoveries[-1] <= 10, f"publishing resumed only after {recoveries} s"
        for i in range(30, 40):
            await publish(i)

        info = await js.stream_info("R3")
        stored = set()
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg("R3", seq)
            stored.add(msg.headers["Nats-Msg-Id"] if msg.headers else "")
        assert acked <= stored, f"acked but lost: {sorted(acked - stored)}"
        assert info.state.messages == len(stored)  # retries were deduplicated
        await js.delete_stream("R3")
    finally:
        await nc.close()
        if down is not None:
            await cluster.arestart(down)  # the module's next tests get a whole cluster
