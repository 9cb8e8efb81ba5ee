"""``aclbus cluster up`` and ``aclbus demo --cluster`` as real processes, on real nats-servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import nats
import pytest

from aclbus_nats.server.process import pid_alive


def _env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ACLBUS_")}
    clean.update(extra)
    return clean


async def _spawn(*args: str, cwd: Path, **env: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aclbus.cli",
        *args,
        cwd=cwd,
        env=_env(**env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _facts(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if not line:
        assert proc.stderr is not None
        err = await asyncio.wait_for(proc.stderr.read(), 10)
        pytest.fail(f"cluster up printed nothing: {err.decode()}")
    facts: dict[str, Any] = json.loads(line)
    return facts


async def _stop(proc: asyncio.subprocess.Process, sig: int) -> tuple[int, str]:
    proc.send_signal(sig)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def _gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    """The PIDs still alive after ``timeout`` seconds (polled)."""
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if pid_alive(pid)]
    while alive and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        alive = [pid for pid in alive if pid_alive(pid)]
    return alive


@contextlib.asynccontextmanager
async def _reaped(proc: asyncio.subprocess.Process) -> Any:
    """Kill ``proc`` by its PID if a failed test left it running (its nodes die with it)."""
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.wait(), 10)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_cluster_up_serves_r3_streams_and_stops_every_node_on_a_signal(
    tmp_path: Path, sig: int
) -> None:
    proc = await _spawn("cluster", "up", "--temp", "--json", cwd=tmp_path)
    async with _reaped(proc):
        facts = await _facts(proc)
        pids = [node["pid"] for node in facts["nodes"]]
        assert len(pids) == 3
        assert all(pid_alive(pid) for pid in pids)
        assert facts["env"]["ACLBUS_STREAMS__REPLICAS"] == "3"
        urls = facts["env"]["ACLBUS_NATS__SERVERS"].split(",")
        assert urls == [node["url"] for node in facts["nodes"]]
        assert all(url.startswith("nats://127.0.0.1:") for url in urls)

        nc = await nats.connect(servers=urls, connect_timeout=5)
        try:
            js = nc.jetstream()
            await js.add_stream(name="R3", subjects=["r3.>"], num_replicas=3)
            ack = await js.publish("r3.x", b"kept", timeout=10)
            info = await js.stream_info("R3")
        finally:
            await nc.close()
        assert (ack.stream, ack.seq) == ("R3", 1)
        assert info.cluster is not None
        assert info.cluster.leader in {node["name"] for node in facts["nodes"]}
        assert len(info.cluster.replicas or []) == 2

        code, err = await _stop(proc, sig)
        assert code == 0, err
        assert "Traceback" not in err
        assert "stopped: 3 node(s)" in err
        assert await _gone(pids) == []


async def test_a_second_cluster_up_on_the_same_data_dir_names_the_running_one(
    tmp_path: Path,
) -> None:
    data = tmp_path / "store"
    first = await _spawn("cluster", "up", "--data-dir", str(data), "--json", cwd=tmp_path)
    async with _reaped(first):
        facts = await _facts(first)
        assert facts["data_dir"] == str(data)
        assert (data / "cluster.json").exists()
        second = await _spawn("cluster", "up", "--data-dir", str(data), "--json", cwd=tmp_path)
        async with _reaped(second):
            out, err = await asyncio.wait_for(second.communicate(), 60)
        assert second.returncode == 1, err.decode()
        assert out == b""
        message = err.decode()
        assert f"pid {first.pid}" in message
        assert facts["nodes"][0]["url"] in message
        assert "Traceback" not in message

        await _with_js(facts, _create_and_publish)
        code, err_text = await _stop(first, signal.SIGTERM)
        assert code == 0, err_text
        assert await _gone([node["pid"] for node in facts["nodes"]]) == []
    # The streams' store lasts; the note of the running cluster does not.
    assert sorted(p.name for p in data.iterdir() if p.is_dir()) == [
        "aclbus-0",
        "aclbus-1",
        "aclbus-2",
    ]
    assert not (data / "cluster.json").exists()

    # The next cluster up on that dir has the stream and its message (on new client ports).
    again = await _spawn("cluster", "up", "--data-dir", str(data), "--json", cwd=tmp_path)
    async with _reaped(again):
        facts = await _facts(again)
        assert await _with_js(facts, _stored) == 1
        code, err_text = await _stop(again, signal.SIGINT)
        assert code == 0, err_text


async def _with_js(facts: dict[str, Any], work: Any) -> Any:
    nc = await nats.connect(servers=facts["servers"].split(","), connect_timeout=5)
    try:
        return await work(nc.jetstream())
    finally:
        await nc.close()


async def _create_and_publish(js: Any) -> None:
    await js.add_stream(name="KEPT", subjects=["kept.>"], num_replicas=3)
    await js.publish("kept.x", b"kept", timeout=10)


async def _stored(js: Any) -> int:
    # The stream's leader is elected again after the restart: ask until it answers.
    deadline = time.monotonic() + 20
    while True:
        try:
            info = await js.stream_info("KEPT")
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
            continue
        return int(info.state.messages)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--nodes", "0"], "--nodes"),
        (["--temp", "--data-dir", "x"], "--data-dir or --temp"),
    ],
    ids=["no-nodes", "temp-and-data-dir"],
)
async def test_cluster_up_refuses_bad_options_with_a_usage_error(
    tmp_path: Path, args: list[str], says: str
) -> None:
    proc = await _spawn("cluster", "up", *args, cwd=tmp_path)
    async with _reaped(proc):
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert says in err.decode()
    assert "Traceback" not in err.decode()


async def test_demo_on_a_cluster_kills_the_stream_leader_and_loses_nothing(
    tmp_path: Path,
) -> None:
    proc = await _spawn(
        "demo", "--cluster", "--agents", "2", "--messages", "3", cwd=tmp_path, COLUMNS="200"
    )
    async with _reaped(proc):
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode()
    assert proc.returncode == 0, text + err.decode()
    assert "node killed: demo-" in text
    assert "(leader of stream ACLBUS_AGENT)" in text
    assert "resumed after " in text
    assert "; node restarted: demo-" in text
    assert "│ retry           │    1 │         1 │      0 │" in text
    assert "work items acknowledged: 6, handled: 6, lost: 0" in text
    assert "Traceback" not in err.decode()


async def test_demo_cluster_without_an_adapter_for_it_says_what_to_install(
    tmp_path: Path,
) -> None:
    proc = await _spawn(
        "demo", "--cluster", cwd=tmp_path, ACLBUS_DISABLE_PLUGINS="nats", ACLBUS_BACKEND="memory"
    )
    async with _reaped(proc):
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert "aclbus cluster demo" in err.decode()
    assert "aclbus[nats]" in err.decode()
