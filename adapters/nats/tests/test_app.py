"""`bus.app`: a FastStream app that runs a bus, served by `faststream run`, documented by AsyncAPI.

Real processes only: nats-servers on loopback, and `faststream run` / `faststream docs gen`
as child processes on the quickstart example, exactly as a user types them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import nats
import pytest
import pytest_asyncio
from faststream import FastStream
from pydantic import BaseModel, Field, create_model

from aclbus import ACLMessage, Bus, ConfigurationError, NoResponders, Performative, Settings
from aclbus.codec import CodecRegistry, JsonCodec
from aclbus.settings import StreamLimits
from aclbus.wire import encode
from aclbus_nats.app import ACL_HEADERS_SCHEMA, make_app
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import EmbeddedServer, monitor
from aclbus_nats.server.process import pid_alive
from aclbus_nats.settings import NatsSettings

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
STARTED = "FastStream app started successfully"


def new_prefix() -> str:
    return f"app{uuid.uuid4().hex[:10]}"


def small_streams() -> StreamLimits:
    # Streams reserve max_bytes against the shared server's limits: keep them small.
    return StreamLimits(max_bytes=8 << 20, storage="memory")


def nats_bus(prefix: str, servers: list[str]) -> Bus:
    """A bus on NATS, made explicitly (no entry points): ``servers=[]`` embeds a server."""
    settings = Settings(backend="nats", subject_prefix=prefix, streams=small_streams())
    backend = NatsBackend(settings, nats=NatsSettings(servers=servers, embedded_store_dir=None))
    return Bus(settings, backend=backend, entry_points=False)


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


async def delete_streams(url: str, prefix: str) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(prefix.upper() + "_"):
                await js.delete_stream(info.config.name)
    finally:
        await nc.close()


@pytest_asyncio.fixture
async def prefix(nats_url: str) -> AsyncIterator[str]:
    """A subject prefix of this test's own on the shared server; its streams go afterwards."""
    name = new_prefix()
    yield name
    await delete_streams(nats_url, name)


def document(app: FastStream) -> dict[str, Any]:
    spec: Any = app.schema.to_specification()
    doc: dict[str, Any] = spec.to_jsonable()
    return doc


# -- faststream run / docs gen on the quickstart, as child processes -----------------------


def child_env(**aclbus: str) -> dict[str, str]:
    """The environment without ACLBUS_* variables, then ``aclbus`` (ACLBUS_ + upper name)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACLBUS_")}
    env.update({f"ACLBUS_{k.upper()}": v for k, v in aclbus.items()})
    return env


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working dir of the test's own (.env, aclbus.toml, asyncapi.json live there) in which
    ``examples/quickstart:app`` names the repository's example, as in the docs."""
    (tmp_path / "examples").symlink_to(EXAMPLES, target_is_directory=True)
    return tmp_path


def faststream(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "faststream", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float) -> list[str]:
    """Read the child's stderr until a line holds ``text``; fail if it exits or takes too long."""
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                proc.kill()
                out, err = proc.communicate()
                pytest.fail(f"no {text!r} in {timeout} s; stderr: {''.join(seen)}{err}\n{out}")
            line = proc.stderr.readline()
            if not line:
                out, err = proc.communicate()
                pytest.fail(f"exited with {proc.returncode}: {''.join(seen)}{err}\n{out}")
            seen.append(line)
            if text in line:
                return seen


async def wait_acked(url: str, stream: str, consumer: str, seq: int, timeout: float) -> None:
    """Wait until ``consumer`` has acknowledged stream sequence ``seq``."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + timeout
        while (info := await js.consumer_info(stream, consumer)).ack_floor.stream_seq < seq:
            if time.monotonic() > deadline:
                pytest.fail(f"{consumer} did not ack seq {seq} in {timeout} s: {info}")
            await asyncio.sleep(0.05)
    finally:
        await nc.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_faststream_run_serves_the_quickstart_agents(
    sig: signal.Signals, workdir: Path, nats_url: str, prefix: str
) -> None:
    env = child_env(
        backend="nats",
        nats__servers=nats_url,
        subject_prefix=prefix,
        streams__storage="memory",
        streams__max_bytes=str(8 << 20),
    )
    proc = faststream("run", "examples/quickstart:app", cwd=workdir, env=env)
    try:
        wait_for_line(proc, STARTED, timeout=30)
        async with nats_bus(prefix, [nats_url]) as client:
            reply = await client.request(
                ACLMessage(
                    performative=Performative.REQUEST,
                    sender_id="tester",
                    receiver_id="worker",
                    message_type="math.sum",
                    payload=[2, 3, 4],
                ),
                timeout=5.0,
            )
            [ack] = await client.send(
                ACLMessage(
                    performative=Performative.INFORM,
                    sender_id="tester",
                    receiver_id="worker",
                    message_type="news",
                    payload="served",
                )
            )
        assert (reply.performative, reply.sender_id, reply.payload) == (
            Performative.INFORM,
            "worker",
            {"sum": 9},
        )
        assert ack.stream is not None
        assert ack.sequence is not None
        await wait_acked(nats_url, ack.stream, f"{prefix}-agent-worker", ack.sequence, 10)

        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "worker got news 'served' (attempt 1)" in out
    assert "shut down gracefully" in err
    assert "Traceback" not in err, err
    assert "ERROR" not in err, err


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """The child's output once it exits by itself; fail (and kill its whole session, workers
    and their servers included) if it has not within ``timeout`` seconds."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"still running after {timeout} s; stdout: {out}\nstderr: {err}")


def test_faststream_run_workers_refuse_to_embed_a_server_each(workdir: Path) -> None:
    """``--workers 2`` with no server configured: each worker would embed a nats-server of
    its own and the agents would not share their messages. Refused, and the run ends."""
    store = workdir / "store"  # where an embedded server would write its config and log
    env = child_env(backend="nats", streams__storage="memory")
    env["ACLBUS_NATS__EMBEDDED_STORE_DIR"] = str(store)
    proc = faststream("run", "examples/quickstart:app", "--workers", "2", cwd=workdir, env=env)
    started = time.monotonic()
    out, err = finish(proc, timeout=90)
    took = time.monotonic() - started
    text = out + err
    assert "would each start an embedded nats-server" in text, text
    assert "ACLBUS_NATS__SERVERS" in text
    assert "Traceback" not in text, text
    assert "Started child process [" not in text, f"a refused worker was restarted: {text}"
    assert not (store / "nats-server.conf").exists(), "a worker started a server"
    print(f"refused and stopped after {took:.1f} s")


async def test_faststream_run_workers_share_the_configured_server(
    workdir: Path, nats_url: str, prefix: str
) -> None:
    """With ``ACLBUS_NATS__SERVERS`` set, ``--workers 2`` serves the agents as usual."""
    env = child_env(
        backend="nats",
        nats__servers=nats_url,
        subject_prefix=prefix,
        streams__storage="memory",
        streams__max_bytes=str(8 << 20),
    )
    proc = faststream("run", "examples/quickstart:app", "--workers", "2", cwd=workdir, env=env)
    try:
        async with nats_bus(prefix, [nats_url]) as client:
            ask = ACLMessage(
                performative=Performative.REQUEST,
                sender_id="tester",
                receiver_id="worker",
                message_type="math.sum",
                payload=[1, 2],
            )
            deadline = time.monotonic() + 60
            while True:  # until a worker has started and serves the request subject
                try:
                    reply = await client.request(ask, timeout=2.0)
                    break
                except NoResponders:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    await asyncio.sleep(0.2)
        assert reply.payload == {"sum": 3}
        proc.send_signal(signal.SIGTERM)
        out, err = finish(proc, timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert "would each start an embedded nats-server" not in out + err


def test_faststream_docs_gen_lists_the_quickstart_channels(workdir: Path) -> None:
    # No server configured: the app would embed one, but generating the document starts none.
    proc = faststream(
        "docs", "gen", "examples/quickstart:app", cwd=workdir, env=child_env(backend="nats")
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, f"{out}\n{err}"
    doc = json.loads((workdir / "asyncapi.json").read_text(encoding="utf-8"))

    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] == "aclbus"
    channels, operations = doc["channels"], doc["operations"]
    inbox = channels["aclbus.agent.worker"]
    assert inbox["address"] == "aclbus.agent.worker"
    assert inbox["x-aclbus"] == {
        "stream": "ACLBUS_AGENT",
        "consumer": "aclbus-agent-worker",
        "delivery": "at_least_once",
    }
    assert channels["aclbus.agent.worker.high"]["x-aclbus"]["consumer"] == "aclbus-prio-worker"
    assert channels["aclbus.rpc.worker"]["bindings"]["nats"] == {
        "subject": "aclbus.rpc.worker",
        "queue": "aclbus-rpc-worker",
        "bindingVersion": "custom",
    }
    assert channels["aclbus.broadcast"]["address"] == "aclbus.broadcast"
    assert {k: v["action"] for k, v in operations.items()} == {
        "worker.inbox": "receive",
        "worker.priority": "receive",
        "worker.rpc": "receive",
        "worker.broadcast": "receive",
    }
    assert operations["worker.inbox"]["messages"] == [
        {"$ref": "#/channels/aclbus.agent.worker/messages/worker.add"},
        {"$ref": "#/channels/aclbus.agent.worker/messages/worker.news"},
    ]
    add = doc["components"]["messages"]["worker.add"]
    assert add["summary"] == "Answer a list of numbers with their sum."
    assert add["payload"] == {"$ref": "#/components/schemas/AnyJSON"}
    assert add["headers"]["allOf"][1]["properties"] == {
        "ce-type": {"type": "string", "enum": ["fipa.acl.request"]},
        "acl-message-type": {"type": "string", "const": "math.sum"},
    }
    assert doc["components"]["schemas"]["ACLHeaders"]["required"] == [
        "ce-specversion",
        "ce-id",
        "ce-source",
        "ce-type",
    ]


# -- the app's life cycle, in process ------------------------------------------------------


def add_worker(bus: Bus, on_inform: Callable[[ACLMessage], None] | None = None) -> None:
    worker = bus.agent("worker")

    @worker.on(Performative.REQUEST)
    async def double(msg: ACLMessage) -> ACLMessage:
        return msg.reply(Performative.INFORM, payload=msg.payload * 2)

    @worker.on(Performative.INFORM)
    async def note(msg: ACLMessage) -> None:
        if on_inform is not None:
            on_inform(msg)


async def ask_worker(bus: Bus) -> Any:
    reply = await bus.request(
        ACLMessage(performative="request", sender_id="t", receiver_id="worker", payload=21),
        timeout=5.0,
    )
    return reply.payload


async def test_the_app_starts_the_bus_and_its_embedded_server_then_stops_both() -> None:
    bus = nats_bus(new_prefix(), servers=[])
    add_worker(bus)
    app: FastStream = bus.app
    backend = bus.backend
    assert isinstance(backend, NatsBackend)
    assert backend.server is not None
    assert app.broker is backend.broker
    assert not backend.server.running

    # The broker is made with the embedded server's URL: its own start would fail if the
    # bus had not started the server in on_startup, before it.
    await asyncio.wait_for(app.start(), 30)
    try:
        pid = backend.server.pid
        assert bus.started
        assert backend.broker.running
        assert pid_alive(pid)
        assert await ask_worker(bus) == 42
    finally:
        await asyncio.wait_for(app.stop(), 30)
    assert not bus.started
    assert not backend.broker.running
    assert wait_gone(pid, 10), f"nats-server {pid} still runs"


async def test_the_app_stops_cleanly_when_the_broker_was_stopped_first(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = nats_bus(new_prefix(), servers=[])
    add_worker(bus)
    app: FastStream = bus.app
    backend = bus.backend
    assert isinstance(backend, NatsBackend)
    assert backend.server is not None
    await asyncio.wait_for(app.start(), 30)
    pid = backend.server.pid
    await backend.broker.stop()  # by hand: the connection is gone under the bus

    await asyncio.wait_for(app.stop(), 30)
    assert not bus.started
    assert wait_gone(pid, 10), f"nats-server {pid} still runs"
    assert [r for r in caplog.records if r.levelno >= 40] == []


async def test_the_users_hooks_run_while_the_bus_is_up(nats_url: str, prefix: str) -> None:
    bus = nats_bus(prefix, [nats_url])
    add_worker(bus)
    app: FastStream = bus.app
    seen: list[tuple[str, bool]] = []

    @app.on_startup
    async def on_startup() -> None:
        seen.append(("on_startup", bus.started))

    @app.after_startup
    async def after_startup() -> None:
        seen.append(("after_startup", bus.started))

    @app.on_shutdown
    async def on_shutdown() -> None:
        seen.append(("on_shutdown", bus.started))
        assert await ask_worker(bus) == 42  # the bus can still talk

    @app.after_shutdown
    async def after_shutdown() -> None:
        seen.append(("after_shutdown", bus.started))

    await asyncio.wait_for(app.start(), 30)
    await asyncio.wait_for(app.stop(), 30)
    assert seen == [
        ("on_startup", True),
        ("after_startup", True),
        ("on_shutdown", True),
        ("after_shutdown", False),
    ]
    # A second run of the same app behaves the same (the stop hook is not added twice).
    await asyncio.wait_for(app.start(), 30)
    assert bus.started
    await asyncio.wait_for(app.stop(), 30)
    assert not bus.started
    assert seen[-2:] == [("on_shutdown", True), ("after_shutdown", False)]


async def test_documenting_the_agents_opens_no_second_subscription(
    nats_url: str, nats_server: EmbeddedServer, prefix: str
) -> None:
    received: list[str] = []
    all_in = asyncio.Event()
    count = 20

    def on_inform(msg: ACLMessage) -> None:
        received.append(msg.message_id)
        if len(received) == count:
            all_in.set()

    bus = nats_bus(prefix, [nats_url])
    add_worker(bus, on_inform)
    app: FastStream = bus.app
    assert "worker.inbox" in document(app)["operations"]
    await asyncio.wait_for(app.start(), 30)
    try:
        doc = document(app)  # asked again while it runs
        assert {"worker.inbox", "worker.rpc", "worker.broadcast"} <= set(doc["operations"])
        assert bus.backend.broker.subscribers == []  # type: ignore[attr-defined]

        # One consumer per stream, one subscriber on the request subject, and on the inbox
        # and broadcast subjects no subscription but the streams' own.
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            inbox_consumers = await js.consumers_info(f"{prefix.upper()}_AGENT")
            broadcast_consumers = await js.consumers_info(f"{prefix.upper()}_BROADCAST")
        finally:
            await nc.close()
        # (the priority lane's consumer is made when its first urgent message comes)
        assert [c.name for c in inbox_consumers] == [f"{prefix}-agent-worker"]
        assert [c.name for c in broadcast_consumers] == [f"{prefix}-broadcast-worker"]

        def subscriptions(subject: str) -> list[tuple[str, str | None]]:
            found = monitor.get_json(nats_server.monitor_port, f"/subsz?subs=1&test={subject}")
            return [(s["subject"], s.get("qgroup")) for s in found["subscriptions_list"]]

        assert subscriptions(f"{prefix}.rpc.worker") == [
            (f"{prefix}.rpc.worker", f"{prefix}-rpc-worker")
        ]
        assert subscriptions(f"{prefix}.agent.worker") == [(f"{prefix}.agent.>", None)]
        assert subscriptions(f"{prefix}.broadcast") == [(f"{prefix}.broadcast", None)]

        # And each message is handled once.
        async with nats_bus(prefix, [nats_url]) as client:
            sent = [
                ACLMessage(performative="inform", sender_id="t", receiver_id="worker", payload=i)
                for i in range(count)
            ]
            for msg in sent:
                await client.send(msg)
            await asyncio.wait_for(all_in.wait(), 10)
            await asyncio.sleep(0.3)  # time for a second copy to show up, if there were one
        assert sorted(received) == sorted(m.message_id for m in sent)
    finally:
        await asyncio.wait_for(app.stop(), 30)


async def test_agents_made_after_the_app_are_documented(nats_url: str) -> None:
    bus = nats_bus(new_prefix(), [nats_url])
    app: FastStream = bus.app
    p = bus.settings.subject_prefix
    assert f"{p}.agent.late" not in document(app)["channels"]

    late = bus.agent("late")

    @late.on(Performative.CFP, Performative.PROPOSE, message_type="offer.book")
    async def bid(msg: ACLMessage) -> None:
        """Bid on a book."""

    doc = document(app)
    assert doc["channels"][f"{p}.agent.late"]["address"] == f"{p}.agent.late"
    assert doc["channels"][f"{p}.rpc.late"]["address"] == f"{p}.rpc.late"
    assert doc["operations"]["late.broadcast"]["channel"] == {"$ref": f"#/channels/{p}.broadcast"}
    assert doc["operations"]["late.rpc"]["reply"]["channel"] == {
        "$ref": f"#/channels/{p}.rpc-reply"
    }
    message = doc["components"]["messages"]["late.bid"]
    assert message["title"] == "cfp, propose offer.book"
    assert message["headers"]["allOf"][1]["properties"]["ce-type"]["enum"] == [
        "fipa.acl.cfp",
        "fipa.acl.propose",
    ]

    await bus.remove_agent("late")
    assert f"{p}.agent.late" not in document(app)["channels"]


async def test_an_agent_without_handlers_receives_any_acl_message(nats_url: str) -> None:
    bus = nats_bus(new_prefix(), [nats_url])
    bus.agent("idle")
    doc = document(bus.app)
    p = bus.settings.subject_prefix
    assert doc["operations"]["idle.inbox"]["messages"] == [
        {"$ref": f"#/channels/{p}.agent.idle/messages/ACLMessage"}
    ]
    generic = doc["components"]["messages"]["ACLMessage"]
    assert generic["headers"] == {"$ref": "#/components/schemas/ACLHeaders"}
    assert doc["components"]["schemas"]["AnyJSON"]["title"] == "AnyJSON"


def test_the_headers_schema_names_exactly_the_headers_the_encoder_writes() -> None:
    everything = ACLMessage(
        performative="request",
        sender_id="a",
        receiver_id="b",
        receivers=("c",),
        correlation_id="conv",
        reply_to="desk",
        ttl=60,
        priority=6,
        retry_count=1,
        message_type="task.x",
        topic="t.y",
        routing_key="k",
        reply_with="q1",
        in_reply_to="q0",
        reply_by="2026-01-31T12:00:00Z",
        protocol="fipa-request",
        language="json",
        ontology="o",
        hops=2,
        caused_by=("m0", "m1"),
        payload={"x": 1},
    )
    headers, _ = encode(everything, CodecRegistry([JsonCodec()]))
    properties = ACL_HEADERS_SCHEMA["properties"]
    assert set(headers) == set(properties)
    assert set(ACL_HEADERS_SCHEMA["required"]) <= set(headers)


# -- typed payloads, groups and topics in the document --------------------------------------


class Address(BaseModel):
    """Where to deliver."""

    city: str
    zip_code: str = Field(pattern=r"^[0-9]{5}$")


class Order(BaseModel):
    """An order to ship."""

    item: str = Field(min_length=1)
    quantity: int = Field(ge=1)
    ship_to: Address | None = None


def resolve(doc: dict[str, Any], ref: str) -> Any:
    """Follow a local ``$ref`` (a URI fragment holding a JSON pointer) in ``doc``."""
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        key = unquote(part).replace("~1", "/").replace("~0", "~")
        assert key in node, f"{ref}: no {key!r} among {sorted(node)[:20]}"
        node = node[key]
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


async def test_a_typed_handlers_model_is_its_messages_payload_schema(nats_url: str) -> None:
    bus = nats_bus(new_prefix(), [nats_url])
    shop = bus.agent("shop")

    @shop.on(Performative.REQUEST, message_type="order.*", payload=Order)
    async def take(msg: ACLMessage) -> None:
        """Take an order."""

    @shop.on(Performative.INFORM)
    async def note(msg: ACLMessage) -> None:
        """Note anything."""

    doc = document(bus.app)
    messages = doc["components"]["messages"]
    take_message = messages["shop.take"]
    assert take_message["payload"] == {"$ref": "#/components/schemas/Order"}
    assert messages["shop.note"]["payload"] == {"$ref": "#/components/schemas/AnyJSON"}
    assert "not-understood" in take_message["description"]
    assert "description" not in messages["shop.note"]
    order = resolve(doc, take_message["payload"]["$ref"])
    assert order["required"] == ["item", "quantity"]
    assert order["properties"]["quantity"]["minimum"] == 1
    ship_to = order["properties"]["ship_to"]["anyOf"][0]
    assert ship_to == {"$ref": "#/components/schemas/Address"}
    assert resolve(doc, ship_to["$ref"])["properties"]["zip_code"]["pattern"] == r"^[0-9]{5}$"
    # A message type pattern is a pattern on the header, not a constant.
    constraint = take_message["headers"]["allOf"][1]["properties"]["acl-message-type"]
    assert constraint == {"type": "string", "pattern": r"^order\.[A-Za-z0-9_-]{1,128}$"}
    assert re.fullmatch(constraint["pattern"].strip("^$"), "order.created")
    assert not re.fullmatch(constraint["pattern"].strip("^$"), "order.created.eu")
    for ref in refs(doc):
        resolve(doc, ref)


async def test_a_payload_model_named_like_another_schema_gets_a_prefix(nats_url: str) -> None:
    bus = nats_bus(new_prefix(), [nats_url])
    agent = bus.agent("odd")
    clash = create_model("AnyJSON", number=(int, ...))

    @agent.on(Performative.REQUEST, payload=clash)
    async def count(msg: ACLMessage) -> None:
        pass

    doc = document(bus.app)
    assert doc["components"]["schemas"]["AnyJSON"]["title"] == "AnyJSON"
    assert "number" not in doc["components"]["schemas"]["AnyJSON"].get("properties", {})
    payload = doc["components"]["messages"]["odd.count"]["payload"]
    assert payload == {"$ref": "#/components/schemas/payload.AnyJSON"}
    assert resolve(doc, payload["$ref"])["required"] == ["number"]


async def test_groups_and_topic_subscriptions_are_channels(nats_url: str, prefix: str) -> None:
    bus = nats_bus(prefix, [nats_url])
    desk, clerk = bus.agent("desk"), bus.agent("clerk")

    @desk.on(Performative.REQUEST, payload=Order)
    async def take(msg: ACLMessage) -> None:
        """Take an order."""

    @desk.on(Performative.INFORM, topic="orders.eu.*")
    async def eu(msg: ACLMessage) -> None:
        """An EU order event."""

    async def big(msg: ACLMessage) -> None:
        """A big order anywhere."""

    await desk.subscribe("orders.>", big, message_type="order.created")  # before the start
    app: FastStream = bus.app
    async with bus:
        await desk.join("sales")
        await clerk.join("sales")
        await clerk.subscribe("invoices.*")
        doc = document(app)
        await desk.leave("sales")
        after_leave = document(app)

    channels, operations = doc["channels"], doc["operations"]
    sales = channels[f"{prefix}.group.sales"]
    assert sales["address"] == f"{prefix}.group.sales"
    assert sales["x-aclbus"] == {"stream": f"{prefix.upper()}_GROUP", "delivery": "at_least_once"}
    # the members' handlers that take group traffic: not the topic-only ones
    assert sorted(sales["messages"]) == ["ACLMessage", "desk.take"]
    assert operations["desk.group.sales"]["x-aclbus"]["consumer"] == f"{prefix}-group-sales-desk"
    assert operations["clerk.group.sales"]["channel"] == {
        "$ref": f"#/channels/{prefix}.group.sales"
    }
    assert "desk.group.sales" not in after_leave["operations"]
    assert "clerk.group.sales" in after_leave["operations"]

    orders = channels[f"{prefix}.topic.orders.>"]
    assert orders["address"] == f"{prefix}.topic.orders.>"
    assert orders["x-aclbus"] == {"stream": f"{prefix.upper()}_TOPIC", "pattern": "orders.>"}
    operation = operations["desk.topic.orders.>"]
    assert operation["channel"] == {"$ref": f"#/channels/{prefix}.topic.orders.%3E"}
    # the subscription's own handler, the agent's overlapping topic handler, its general one
    assert [resolve(doc, m["$ref"])["$ref"] for m in operation["messages"]] == [
        "#/components/messages/desk.big",
        "#/components/messages/desk.take",
        "#/components/messages/desk.eu",
    ]
    big_headers = doc["components"]["messages"]["desk.big"]["headers"]["allOf"][1]
    assert big_headers["properties"]["acl-topic"]["pattern"].startswith(r"^orders\.")
    assert big_headers["required"] == ["acl-message-type", "acl-topic"]
    # the inbox takes no topic-only handler
    assert sorted(channels[f"{prefix}.agent.desk"]["messages"]) == ["ACLMessage", "desk.take"]
    assert [m["$ref"] for m in operations["clerk.topic.invoices.*"]["messages"]] == [
        f"#/channels/{prefix}.topic.invoices.*/messages/ACLMessage"
    ]
    for ref in refs(doc):
        resolve(doc, ref)


def test_make_app_refuses_another_backend(nats_url: str) -> None:
    bus = nats_bus(new_prefix(), [nats_url])
    other = NatsBackend(bus.settings, nats=NatsSettings(servers=[nats_url]))
    with pytest.raises(ConfigurationError, match="bus' own backend"):
        make_app(other, bus)


def test_only_asyncapi_3_is_supported(nats_url: str) -> None:
    app: FastStream = nats_bus(new_prefix(), [nats_url]).app
    app.schema.schema_version = "2.6.0"  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match=r"AsyncAPI 3\.0"):
        app.schema.to_specification()


@pytest.fixture(autouse=True)
def _no_server_left_behind() -> Iterator[None]:
    """No test of this module leaves an embedded server of its own running."""
    from aclbus_nats.server import embedded

    before = set(embedded._live)
    yield
    assert set(embedded._live) <= before
