"""``aclbus send``, ``request`` and ``listen`` as real processes on a real nats-server.

Each test has a subject prefix of its own on the session's server; the responders and the
agent whose inbox is tapped run in the test process, the commands in subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aclbus.acl import ACLMessage, Performative
from aclbus.bus import Bus
from aclbus.settings import Settings, StreamLimits
from aclbus.testing.collector import Collector
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import serving
from aclbus_nats.settings import NatsSettings
from aclbus_nats.testing import delete_streams

_STARTUP = 30.0  # seconds a command may take to start on a loaded machine


@dataclass
class Env:
    """The environment of the commands: the session's server, this test's prefix."""

    url: str
    prefix: str

    @property
    def vars(self) -> dict[str, str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("ACLBUS_")}
        return {
            **clean,
            "ACLBUS_BACKEND": "nats",
            "ACLBUS_NATS__SERVERS": self.url,
            "ACLBUS_SUBJECT_PREFIX": self.prefix,
            "ACLBUS_STREAMS__STORAGE": "memory",
            "ACLBUS_PLUGINS": "nats",  # the adapter only: the installed plugins test themselves
        }

    def bus(self) -> Bus:
        settings = Settings(
            backend="nats", subject_prefix=self.prefix, streams=StreamLimits(storage="memory")
        )
        return Bus(
            settings,
            backend=NatsBackend(settings, nats=NatsSettings(servers=[self.url])),
            entry_points=False,
        )


@pytest.fixture
async def env(nats_url: str) -> AsyncIterator[Env]:
    prefix = "cli" + uuid.uuid4().hex[:10]
    yield Env(nats_url, prefix)
    await delete_streams(nats_url, prefix)


async def _start(env: Env | dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aclbus.cli",
        *args,
        env=env.vars if isinstance(env, Env) else env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _run(env: Env | dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await _start(env, *args)
    out, err = await asyncio.wait_for(proc.communicate(), _STARTUP)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _listening(proc: asyncio.subprocess.Process) -> list[str]:
    """Read the listener's stderr until it says it listens; return what it said."""
    assert proc.stderr is not None
    said: list[str] = []
    async with asyncio.timeout(_STARTUP):
        while True:
            line = (await proc.stderr.readline()).decode()
            assert line, f"the listener exited before it listened: {said}"
            said.append(line)
            if line.startswith("listening on"):
                return said


async def test_listen_hears_what_separate_send_processes_send_and_takes_nothing(
    env: Env,
) -> None:
    """Two senders, one listener; bob's durable inbox still holds both messages after."""
    bob = env.bus()
    bob.agent("bob")
    async with bob:  # bob's durable consumer exists (and stays) before anything is sent
        pass
    listener = await _start(
        env, "listen", "--agent", "bob", "--topic", "orders.>", "--json", "--count", "3"
    )
    try:
        await _listening(listener)
        sent = await asyncio.gather(
            _run(env, "send", "bob", "hello", "--as", "alice", "--json"),
            _run(env, "send", "bob", '{"n": 2}', "--json-content", "-p", "request"),
            _run(env, "send", "--topic", "orders.eu.new", "order 1", "--type", "order.new"),
        )
        for code, out, err in sent:
            assert code == 0, out + err
        out, err = await asyncio.wait_for(listener.communicate(), _STARTUP)
    finally:
        if listener.returncode is None:
            listener.kill()
            await listener.wait()
    assert listener.returncode == 0, err.decode()
    heard = [json.loads(line) for line in out.decode().splitlines()]
    assert sorted((m["performative"], json.dumps(m["payload"])) for m in heard) == [
        ("inform", '"hello"'),
        ("inform", '"order 1"'),
        ("request", '{"n": 2}'),
    ]
    first = json.loads(sent[0][1])
    assert first["acks"][0]["stream"] == f"{env.prefix.upper()}_AGENT"
    assert first["message_id"] in {m["message_id"] for m in heard}

    # the tap took nothing away: bob, started again, gets both of its messages
    inbox: Collector[ACLMessage] = Collector()
    again = env.bus()

    @again.agent("bob").on(Performative.INFORM, Performative.REQUEST)
    async def keep(msg: ACLMessage) -> None:
        inbox.add(msg)

    async with again:
        got = await inbox.wait_for(2, timeout=10)
    assert sorted(m.sender_id for m in got) == ["alice", "cli"]


async def test_request_exits_by_the_outcome(env: Env) -> None:
    bus = env.bus()
    worker = bus.agent("worker")

    @worker.on(Performative.REQUEST)
    async def handle(msg: ACLMessage) -> ACLMessage:
        if msg.payload == "refuse":
            return msg.reply(Performative.REFUSE, payload="not today")
        if msg.payload == "slow":
            await asyncio.sleep(1.5)  # beyond the request's --timeout
        return msg.reply(Performative.INFORM, payload={"echo": msg.payload})

    async with bus:
        ok, refused, slow, nobody = await asyncio.gather(
            _run(env, "request", "worker", "hi", "--json"),
            _run(env, "request", "worker", "refuse"),
            _run(env, "request", "worker", "slow", "--timeout", "0.5"),
            _run(env, "request", "nobody", "hi"),
        )
    assert ok[0] == 0, ok
    reply = json.loads(ok[1])
    assert (reply["performative"], reply["sender_id"], reply["payload"]) == (
        "inform",
        "worker",
        {"echo": "hi"},
    )
    assert refused[0] == 5, refused
    assert "refuse worker → cli: not today" in refused[1]
    assert slow[0] == 3, slow
    assert "within 0.5 s" in slow[2]
    assert nobody[0] == 4, nobody
    assert "no responders" in nobody[2]
    for _code, out, err in (ok, refused, slow, nobody):
        assert "Traceback" not in out + err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_listen_stops_cleanly_on_a_signal(env: Env, sig: signal.Signals) -> None:
    listener = await _start(env, "listen", "--group", "crew")
    try:
        said = await _listening(listener)
        listener.send_signal(sig)
        _, err = await asyncio.wait_for(listener.communicate(), _STARTUP)
    finally:
        if listener.returncode is None:
            listener.kill()
            await listener.wait()
    assert listener.returncode == 0, "".join(said) + err.decode()
    assert "Traceback" not in "".join(said) + err.decode()
    assert "embedded" not in "".join(said)  # a server was configured: no note about it


def _embedded_env(data_dir: Path) -> dict[str, str]:
    """No server configured: the embedded one, its store in ``data_dir``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ACLBUS_")}
    return {
        **clean,
        "ACLBUS_BACKEND": "nats",
        "ACLBUS_DATA_DIR": str(data_dir),
        "ACLBUS_PLUGINS": "nats",
    }


async def test_listen_and_send_meet_on_the_embedded_server_of_their_data_dir(
    tmp_path: Path,
) -> None:
    """No server configured: the sender uses the server the listener runs on the data dir."""
    env = {**_embedded_env(tmp_path), "ACLBUS_STREAMS__STORAGE": "memory"}
    listener = await _start(env, "listen", "--agent", "bob", "--json", "--count", "1")
    try:
        said = "".join(await _listening(listener))
        assert "runs an embedded nats-server at nats://127.0.0.1:" in said
        assert f"the data dir {tmp_path} use it" in said
        url = await asyncio.to_thread(serving, tmp_path / "nats", timeout=1)
        assert url is not None
        assert url in said
        code, out, err = await _run(env, "send", "bob", "over here")
        assert code == 0, out + err
        assert "embedded" not in err  # it used the listener's server, started none
        heard, _ = await asyncio.wait_for(listener.communicate(), _STARTUP)
    finally:
        if listener.returncode is None:
            listener.kill()
            await listener.wait()
    assert listener.returncode == 0
    assert json.loads(heard)["payload"] == "over here"
    assert serving(tmp_path / "nats") is None  # the server went with the listener


async def test_sends_at_once_share_one_embedded_server_and_all_arrive(tmp_path: Path) -> None:
    """Three at once on a fresh data dir: a server is started, the others use it, none fails.

    The one that started it waits for the others to leave before it stops the server, so none
    loses it mid-send; the messages are in the store for a later ``listen --replay``.
    """
    env = _embedded_env(tmp_path)
    sent = await asyncio.gather(*(_run(env, "send", "bob", f"m{i}") for i in range(3)))
    for code, out, err in sent:
        assert code == 0, out + err
        assert "Error" not in err
        assert "EOF" not in err
    # (how many started one depends on how the three overlapped: one, on an idle machine)
    code, out, err = await _run(
        env, "listen", "--agent", "bob", "--replay", "--count", "3", "--timeout", "20", "--json"
    )
    assert code == 0, out + err
    assert sorted(json.loads(line)["payload"] for line in out.splitlines()) == ["m0", "m1", "m2"]
