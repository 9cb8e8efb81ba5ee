"""``aclbus serve`` as a real process on the session's nats-server, driven over HTTP."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from aclbus import ACLMessage, Bus, Settings
from aclbus.settings import StreamLimits
from aclbus_nats.backend import NatsBackend
from aclbus_nats.settings import NatsSettings
from aclbus_nats.testing import delete_streams

TOKEN = "alice-0f1e2d3c4b5a69788796a5b4"
ROOT = Path(__file__).resolve().parents[3]
LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


@dataclass
class Served:
    url: str
    prefix: str
    process: subprocess.Popen[str]
    lines: queue.Queue[str]
    output: list[str]


def _settings(prefix: str) -> Settings:
    return Settings(
        backend="nats",
        subject_prefix=prefix,
        request_timeout=2.0,
        streams=StreamLimits(max_bytes=8 << 20, storage="memory"),
    )


@pytest.fixture(scope="module")
def served(nats_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    prefix = f"gw{uuid.uuid4().hex[:10]}"
    tokens = tmp_path_factory.mktemp("gateway") / "tokens.toml"
    tokens.write_text(f'alice = "{TOKEN}"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACLBUS_")}
    env.update(
        ACLBUS_BACKEND="nats",
        ACLBUS_NATS__SERVERS=nats_url,
        ACLBUS_SUBJECT_PREFIX=prefix,
        ACLBUS_REQUEST_TIMEOUT="2",
        ACLBUS_STREAMS__MAX_BYTES=str(8 << 20),
        ACLBUS_STREAMS__STORAGE="memory",
        ACLBUS_GATEWAY__TOKENS_FILE=str(tokens),
    )
    aclbus = Path(sys.executable).with_name("aclbus")
    process = subprocess.Popen(
        [str(aclbus), "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    url = None
    try:
        for _ in range(200):  # each get waits up to 0.1 s: 20 s in all
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                if process.poll() is not None:
                    break
                continue
            found = LISTENING.search(line)
            if found:
                url = found.group(1)
                break
        assert url is not None, "aclbus serve did not start:\n" + "".join(output)
        yield Served(url, prefix, process, lines, output)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        asyncio.run(delete_streams(nats_url, prefix))


@dataclass
class Worker:
    bus: Bus
    inbox: list[ACLMessage]


@pytest.fixture
async def worker(served: Served, nats_url: str) -> AsyncIterator[Worker]:
    settings = _settings(served.prefix)
    backend = NatsBackend(settings, nats=NatsSettings(servers=[nats_url]))
    inbox: list[ACLMessage] = []
    async with Bus(settings, backend=backend, entry_points=False) as bus:
        agent = bus.agent("worker")

        @agent.on("request")
        async def answer(msg: ACLMessage) -> ACLMessage:
            if msg.payload == {"sleep": True}:
                await asyncio.sleep(1.5)
            return msg.reply("inform", payload={"answer": msg.payload, "to": msg.sender_id})

        @agent.on("inform")
        async def keep(msg: ACLMessage) -> None:
            inbox.append(msg)

        await agent.start()
        yield Worker(bus, inbox)


@pytest.fixture
async def http(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=served.url, headers=headers, timeout=10) as client:
        yield client


async def test_send_reaches_an_agent_of_another_process(
    http: httpx.AsyncClient, worker: Worker, served: Served
) -> None:
    body = {"performative": "inform", "receiver_id": "worker", "payload": {"n": 7}}
    response = await http.post("/communication/send", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["acks"][0]["stream"] == f"{served.prefix.upper()}_AGENT"
    for _ in range(300):
        if worker.inbox:
            break
        await asyncio.sleep(0.01)
    assert [(m.sender_id, m.payload) for m in worker.inbox] == [("alice", {"n": 7})]


async def test_request_reply_no_responder_and_timeout(
    http: httpx.AsyncClient, worker: Worker
) -> None:
    reply = await http.post("/communication/request", json={"receiver_id": "worker", "payload": 1})
    assert reply.status_code == 200, reply.text
    assert reply.json()["payload"] == {"answer": 1, "to": "alice"}

    loop = asyncio.get_running_loop()
    started = loop.time()
    nobody = await http.post("/communication/request", json={"receiver_id": "nobody", "timeout": 5})
    assert nobody.status_code == 503
    assert nobody.json()["error"] == "NoResponders"
    assert loop.time() - started < 1.5  # at once, not after the timeout

    body = {"receiver_id": "worker", "payload": {"sleep": True}, "timeout": 0.3}
    slow = await http.post("/communication/request", json=body)
    assert slow.status_code == 504
    assert slow.json()["error"] == "RequestTimeout"


async def test_ready_metrics_and_asyncapi_on_nats(http: httpx.AsyncClient) -> None:
    ready = await http.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["backend"] == "nats"
    metrics = await http.get("/metrics")
    assert metrics.status_code == 200
    assert "aclbus_" in metrics.text
    asyncapi = await http.get("/asyncapi.json")
    assert asyncapi.status_code == 200
    assert asyncapi.json()["asyncapi"].startswith(("2.", "3."))


async def test_the_curl_walkthrough_runs(served: Served, worker: Worker) -> None:
    # No skip: a machine without curl cannot show the example works, which is a failure.
    assert shutil.which("curl") is not None, "the walk-through needs curl on PATH"
    env = {"PATH": os.environ["PATH"], "GATEWAY": served.url, "TOKEN": TOKEN}
    done = await asyncio.to_thread(
        subprocess.run,
        ["sh", str(ROOT / "examples" / "gateway_walkthrough.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "walk-through done" in done.stdout
    assert "POST /communication/request -> 200" in done.stdout
    assert '"payload":{"answer":{"question":42},"to":"alice"}' in done.stdout
    assert TOKEN not in done.stdout + done.stderr


def test_sigterm_stops_it_cleanly(served: Served) -> None:
    # Last in the module: the process is the module's.
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(20) == 0
    text = "".join(served.output)
    assert "aclbus gateway stopped" in text
    assert "Traceback" not in text
    assert TOKEN not in text
