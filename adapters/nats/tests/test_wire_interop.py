"""docs/wire-format.md is enough to talk to aclbus agents: proven with plain nats-py.

The "doc client" half of each test uses nats-py, json and the rules of docs/wire-format.md
only (the functions under "The doc client" import nothing from aclbus); the other half is an
aclbus bus with agents on the same nats-server. Section numbers (§) are those of the doc.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
import nats.errors
import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.js import api

from aclbus.acl import ACLMessage, Performative
from aclbus.bus import Bus
from aclbus.errors import MalformedHeaders
from aclbus.settings import Settings, StreamLimits
from aclbus.testing.collector import Collector, eventually
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.settings import NatsSettings

from .raw_client import RawConnection, raw_block, raw_envelope, raw_headers

WAIT = 5.0  # seconds any single wait may take

# -- The doc client: nats-py and docs/wire-format.md only ---------------------------------------

ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # §1
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # §3: a header name
WRITER_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")  # §4.1, what writers write
TTL = re.compile(r"[0-9]{1,20}(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?")  # §4.2
INTEGER = re.compile(r"[0-9]{1,10}")  # §4.3
VERSION = re.compile(r"[0-9]{1,4}\.[0-9]{1,4}")  # §8
PERFORMATIVES = {  # §5
    "accept-proposal", "agree", "cancel", "cfp", "confirm", "disconfirm", "failure", "inform",
    "inform-if", "inform-ref", "not-understood", "propagate", "propose", "proxy", "query-if",
    "query-ref", "refuse", "reject-proposal", "request", "request-when", "request-whenever",
    "subscribe",
}  # fmt: skip


def doc_stream(prefix: str, traffic: str) -> str:
    """§2: ``{PREFIX}_{TRAFFIC}``, the prefix upper-cased with ``-`` turned into ``_``."""
    return f"{prefix.upper().replace('-', '_')}_{traffic.upper()}"


def doc_time(when: datetime) -> str:
    """§4.1: UTC with six fractional digits and ``Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def doc_headers(**fields: str) -> dict[str, str]:
    """A header block from ``name=value`` pairs, ``_`` in names written as ``-``."""
    return {name.replace("_", "-"): value for name, value in fields.items()}


def doc_decode(headers: dict[str, str] | None, body: bytes) -> tuple[dict[str, str], Any]:
    """Read a message by §12: headers (lower-cased, checked) and the JSON body.

    Returns the envelope headers (``ce-*``, ``acl-*``, ``content-type``, application headers;
    ``nats-*`` left out, §3.4) and the decoded body.
    """
    envelope: dict[str, str] = {}
    for name, value in (headers or {}).items():
        key, text = name.lower(), value.strip(" \t")
        assert TOKEN.fullmatch(name), f"{name!r} is not a token"  # §3
        if key.startswith("nats-"):
            continue
        envelope_header = key.startswith(("ce-", "acl-", "aclbus-")) or key == "content-type"
        assert key not in envelope or not envelope_header, f"{key} given twice"
        assert envelope.get(key, text) == text, f"{key} given twice with different values"
        envelope[key] = text
    version = envelope.get("acl-version", "1.0")
    assert VERSION.fullmatch(version), version
    assert version.split(".")[0].lstrip("0") == "1", version  # §8: major 1 only
    assert envelope["ce-specversion"] == "1.0"
    assert envelope["ce-type"].startswith("fipa.acl.")
    assert envelope["ce-type"].removeprefix("fipa.acl.") in PERFORMATIVES, envelope["ce-type"]
    assert ID.fullmatch(envelope["ce-id"]), envelope["ce-id"]
    assert ID.fullmatch(envelope["ce-source"]), envelope["ce-source"]
    for name in ("ce-time", "acl-reply-by"):
        if name in envelope:
            assert WRITER_TIME.fullmatch(envelope[name]), (name, envelope[name])
    content_type = envelope.get("content-type", "application/json")
    assert content_type.split(";")[0].strip().lower() == "application/json", content_type
    for name in ("acl-receiver-id", "acl-correlation-id", "acl-reply-to", "acl-in-reply-to"):
        if name in envelope:
            assert ID.fullmatch(envelope[name]), (name, envelope[name])
    if "acl-receivers" in envelope:
        assert all(ID.fullmatch(r) for r in envelope["acl-receivers"].split(","))
    if "acl-priority" in envelope:
        assert INTEGER.fullmatch(envelope["acl-priority"])
        assert 0 <= int(envelope["acl-priority"]) <= 9
    if "acl-ttl" in envelope:
        assert TTL.fullmatch(envelope["acl-ttl"])
        assert float(envelope["acl-ttl"]) >= 1
    return envelope, json.loads(body) if body else None


async def plain_read(js: Any, stream: str, subject: str, count: int) -> list[Any]:
    """Read ``count`` stored messages of ``subject`` with a plain pull consumer of our own."""
    sub = await js.pull_subscribe(
        subject, stream=stream, config=api.ConsumerConfig(inactive_threshold=10.0)
    )
    try:
        got: list[Any] = []
        deadline = time.monotonic() + WAIT
        while len(got) < count and time.monotonic() < deadline:
            try:
                got += await sub.fetch(count - len(got), timeout=0.5)
            except nats.errors.TimeoutError:
                continue
        for msg in got:
            await msg.ack()
        return got
    finally:
        await sub.unsubscribe()


# -- The aclbus side ----------------------------------------------------------------------------


@pytest_asyncio.fixture
async def prefix(nats_server: EmbeddedServer) -> AsyncIterator[str]:
    """A subject prefix of this test's own, with a ``-`` to exercise the §2 stream naming."""
    value = "wi-" + uuid.uuid4().hex[:10]
    yield value
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            name = info.config.name or ""
            if name.startswith(doc_stream(value, "")):
                await js.delete_stream(name)
    finally:
        await nc.close()


@pytest_asyncio.fixture
async def make_bus(
    nats_server: EmbeddedServer, prefix: str
) -> AsyncIterator[Callable[..., Awaitable[Bus]]]:
    """Start buses (each with its own connection) under this test's prefix; stop them after."""
    buses: list[Bus] = []

    async def make(**overrides: Any) -> Bus:
        values: dict[str, Any] = {
            "backend": "nats",
            "subject_prefix": prefix,
            "streams": StreamLimits(max_bytes=4 << 20, storage="memory"),
        }
        values.update(overrides)
        settings = Settings(**values)
        nats_settings = NatsSettings(servers=[nats_server.url])
        bus = Bus(settings, backend=NatsBackend(settings, nats=nats_settings), entry_points=False)
        await bus.start()
        buses.append(bus)
        return bus

    yield make
    for bus in reversed(buses):
        await bus.stop()


@pytest_asyncio.fixture
async def nc(nats_server: EmbeddedServer) -> AsyncIterator[Client]:
    """A plain nats-py connection: the non-Python agent."""
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


def listen(bus: Bus, agent_id: str, answer: str | None = None) -> Collector[ACLMessage]:
    """Record what ``agent_id`` gets; reply with ``answer`` (a performative) if given."""
    got: Collector[ACLMessage] = Collector()

    @bus.agent(agent_id).on()
    async def handle(msg: ACLMessage) -> ACLMessage | None:
        got.add(msg)
        if answer is None:
            return None
        return msg.reply(answer, payload={"text": "Hello world"})

    return got


# -- doc client → aclbus ------------------------------------------------------------------------


async def test_doc_built_message_reaches_the_inbox_and_the_reply_decodes(
    make_bus: Callable[..., Awaitable[Bus]], nc: Client, prefix: str
) -> None:
    """§11.1 sent by a plain client: the handler gets every field; the reply reads by §9."""
    bus = await make_bus()
    got = listen(bus, "bob", answer="agree")
    await bus.agent("bob").start()
    js = nc.jetstream()
    now = datetime.now(UTC)
    msg_id = str(uuid.uuid4())  # §1: a reader accepts any id, a UUIDv4 included
    headers = doc_headers(
        ce_specversion="1.0",
        ce_id=msg_id,
        ce_source="alice",
        ce_type="fipa.acl.request",
        ce_time=doc_time(now),
        content_type="application/json",
        acl_version="1.0",
        acl_receiver_id="bob",
        acl_priority="6",
        acl_ttl="60.0",
        acl_reply_by=doc_time(now + timedelta(minutes=1)),
        acl_correlation_id="conv-42",
        acl_reply_with="alice-q1",
        acl_protocol="fipa-request",
        acl_message_type="task.translate",
        acl_language="json",
        acl_ontology="translation",
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    headers["Nats-Msg-Id"] = msg_id  # §7
    body = b'{"text":"Bonjour le monde","to":"en"}'
    subject = f"{prefix}.agent.bob"

    ack = await js.publish(subject, body, headers=headers)
    assert ack.stream == doc_stream(prefix, "agent")
    again = await js.publish(subject, body, headers=headers)  # §7: same id → not stored again
    assert (again.seq, again.duplicate) == (ack.seq, True)

    [msg] = await got.wait_for(1, timeout=WAIT)
    assert msg.message_id == msg_id
    assert (msg.sender_id, msg.receiver_id) == ("alice", "bob")
    assert msg.performative is Performative.REQUEST
    assert msg.timestamp == now  # microseconds survive the trip
    assert (msg.priority, msg.ttl) == (6, 60.0)
    assert msg.reply_by == now + timedelta(minutes=1)
    assert (msg.correlation_id, msg.reply_with) == ("conv-42", "alice-q1")
    assert (msg.protocol, msg.message_type) == ("fipa-request", "task.translate")
    assert (msg.language, msg.ontology) == ("json", "translation")
    assert msg.headers == {"traceparent": headers["traceparent"]}
    assert msg.payload == {"text": "Bonjour le monde", "to": "en"}
    assert msg.acl_version == "1.0"
    assert msg.extensions == {}

    async def acked() -> bool:  # §2: the durable inbox acks after handling
        info = await js.consumer_info(doc_stream(prefix, "agent"), f"{prefix}-agent-bob")
        return bool(info.ack_floor.stream_seq == ack.seq and info.num_ack_pending == 0)

    await eventually(acked, timeout=WAIT, what="bob's inbox consumer acked the message")

    # §9: the reply is an ordinary message in alice's inbox, read with a consumer of our own.
    [stored] = await plain_read(js, doc_stream(prefix, "agent"), f"{prefix}.agent.alice", 1)
    reply, payload = doc_decode(stored.headers, stored.data)
    assert stored.headers["Nats-Msg-Id"] == reply["ce-id"] != msg_id  # §7
    assert reply["ce-source"] == "bob"
    assert reply["ce-type"] == "fipa.acl.agree"
    assert reply["acl-receiver-id"] == "alice"
    assert reply["acl-correlation-id"] == "conv-42"
    assert reply["acl-in-reply-to"] == "alice-q1"
    assert (reply["acl-protocol"], reply["acl-language"]) == ("fipa-request", "json")
    assert (reply["acl-ontology"], reply["acl-priority"]) == ("translation", "6")
    for absent in ("acl-reply-to", "acl-reply-with", "acl-reply-by"):
        assert absent not in reply
    assert payload == {"text": "Hello world"}


async def test_doc_built_request_gets_a_reply_decodable_by_the_doc(
    make_bus: Callable[..., Awaitable[Bus]], nc: Client, prefix: str
) -> None:
    """§11.3: a core request with the fewest headers; Bob's reply has the headers of §11.3."""
    bus = await make_bus()
    got = listen(bus, "bob", answer="inform")
    await bus.agent("bob").start()
    request_id = str(uuid.uuid4())
    headers = doc_headers(
        ce_specversion="1.0",
        ce_id=request_id,
        ce_source="alice",
        ce_type="fipa.acl.request",
        ce_time=doc_time(datetime.now(UTC)),
        acl_receiver_id="bob",
        acl_priority="6",
        acl_correlation_id="conv-42",
        acl_reply_with="alice-q1",
        acl_protocol="fipa-request",
        acl_language="json",
        acl_ontology="translation",
    )
    body = b'{"text":"Bonjour le monde","to":"en"}'

    answer = await nc.request(f"{prefix}.rpc.bob", body, timeout=WAIT, headers=headers)

    [msg] = await got.wait_for(1, timeout=WAIT)
    assert msg.message_id == request_id
    assert msg.payload == {"text": "Bonjour le monde", "to": "en"}
    assert msg.acl_version == "1.0"  # §8: absent means 1.0
    reply, payload = doc_decode(answer.headers, answer.data)
    assert set(reply) == {
        "ce-specversion", "ce-id", "ce-source", "ce-type", "ce-time", "content-type",
        "acl-version", "acl-receiver-id", "acl-priority", "acl-correlation-id",
        "acl-in-reply-to", "acl-protocol", "acl-language", "acl-ontology",
        "acl-hops", "acl-caused-by",
    }  # fmt: skip
    assert reply["ce-id"] != request_id
    assert (reply["acl-hops"], reply["acl-caused-by"]) == ("1", request_id)
    assert (reply["ce-source"], reply["ce-type"]) == ("bob", "fipa.acl.inform")
    assert (reply["content-type"], reply["acl-version"]) == ("application/json", "1.0")
    assert (reply["acl-receiver-id"], reply["acl-priority"]) == ("alice", "6")
    assert reply["acl-correlation-id"] == "conv-42"
    assert reply["acl-in-reply-to"] == "alice-q1"
    assert reply["acl-protocol"] == "fipa-request"
    assert (reply["acl-language"], reply["acl-ontology"]) == ("json", "translation")
    assert not any(name.lower().startswith("nats-") for name in answer.headers or {})  # §7
    assert payload == {"text": "Hello world"}


async def test_header_names_are_read_without_regard_to_case(
    make_bus: Callable[..., Awaitable[Bus]], nc: Client, prefix: str
) -> None:
    """§3: what the Go client and the nats CLI write (``Ce-Id``) is read like ``ce-id``."""
    bus = await make_bus()
    got = listen(bus, "bob")
    await bus.agent("bob").start()
    msg_id = str(uuid.uuid4())
    headers = {
        "Ce-Specversion": "1.0",
        "Ce-Id": msg_id,
        "Ce-Source": "alice",
        "Ce-Type": "fipa.acl.inform",
        "Acl-Receiver-Id": "bob",
        "Acl-Correlation-Id": "conv-7",
        "Acl-Deadline-Policy": "strict",  # §8: an unknown acl-* header is an extension
        "Nats-Msg-Id": msg_id,
    }
    await nc.jetstream().publish(f"{prefix}.agent.bob", b"", headers=headers)

    [msg] = await got.wait_for(1, timeout=WAIT)
    assert (msg.message_id, msg.sender_id, msg.receiver_id) == (msg_id, "alice", "bob")
    assert msg.performative is Performative.INFORM
    assert msg.correlation_id == "conv-7"
    assert msg.payload is None  # §6: an empty body is null
    assert msg.extensions == {"deadline-policy": "strict"}


async def test_request_that_nobody_serves_fails_at_once(nc: Client, prefix: str) -> None:
    """§2: no responders (503) instead of a timeout."""
    started = time.monotonic()
    with pytest.raises(nats.errors.NoRespondersError):
        await nc.request(f"{prefix}.rpc.nobody", b"", timeout=WAIT)
    assert time.monotonic() - started < 1.0


async def test_messages_a_reader_cannot_decode_are_terminated_and_answered(
    make_bus: Callable[..., Awaitable[Bus]], nc: Client, prefix: str
) -> None:
    """§8, §10, §12: refused as a whole, terminated (not redelivered), answered not-understood."""
    bus = await make_bus(max_message_bytes=2048, ack_wait=1.0)
    got = listen(bus, "bob", answer="inform")
    await bus.agent("bob").start()
    js = nc.jetstream()
    base = doc_headers(
        ce_specversion="1.0", ce_source="alice", ce_type="fipa.acl.inform", acl_receiver_id="bob"
    )

    # Another major version, to the inbox: terminated, and answered in the sender's inbox.
    future_id = str(uuid.uuid4())
    headers = {**base, "ce-id": future_id, "acl-version": "2.0", "Nats-Msg-Id": future_id}
    ack = await js.publish(f"{prefix}.agent.bob", b"{}", headers=headers)
    [stored] = await plain_read(js, doc_stream(prefix, "agent"), f"{prefix}.agent.alice", 1)
    answer, payload = doc_decode(stored.headers, stored.data)
    assert (answer["ce-type"], answer["ce-source"]) == ("fipa.acl.not-understood", "bob")
    assert answer["acl-receiver-id"] == "alice"
    assert payload["message_id"] == future_id
    assert "acl-version" in payload["reason"]

    async def settled() -> bool:  # +TERM counts as acknowledged: no redelivery
        info = await js.consumer_info(doc_stream(prefix, "agent"), f"{prefix}-agent-bob")
        return bool(info.ack_floor.stream_seq == ack.seq and info.num_ack_pending == 0)

    await eventually(settled, timeout=WAIT, what="the undecodable message was terminated")

    # A bad ce-type and a message over ACLBUS_MAX_MESSAGE_BYTES, as requests: answered on the
    # reply subject.
    bad_type = {**base, "ce-id": "q-1", "ce-type": "fipa.acl.shout"}
    reply = await nc.request(f"{prefix}.rpc.bob", b"{}", timeout=WAIT, headers=bad_type)
    answer, payload = doc_decode(reply.headers, reply.data)
    assert answer["ce-type"] == "fipa.acl.not-understood"
    assert payload["message_id"] == "q-1"
    assert "ce-type" in payload["reason"]

    too_big = {**base, "ce-id": "q-2"}
    body = json.dumps("x" * 2100).encode()
    reply = await nc.request(f"{prefix}.rpc.bob", body, timeout=WAIT, headers=too_big)
    answer, payload = doc_decode(reply.headers, reply.data)
    assert answer["ce-type"] == "fipa.acl.not-understood"
    assert payload["message_id"] == "q-2"
    assert "message" in payload["reason"]
    assert "2048" in payload["reason"]

    await asyncio.sleep(1.5)  # past ack_wait: a message that was not terminated would be back
    assert len(got) == 0  # no handler ever saw any of them


async def test_agent_subscriptions_are_named_as_the_doc_says(
    make_bus: Callable[..., Awaitable[Bus]], nats_server: EmbeddedServer, nc: Client, prefix: str
) -> None:
    """§2: a durable inbox consumer, a queue group for requests, a durable broadcast consumer."""
    bus = await make_bus()
    listen(bus, "bob")
    await bus.agent("bob").start()
    js = nc.jetstream()

    inbox = await js.consumer_info(doc_stream(prefix, "agent"), f"{prefix}-agent-bob")
    assert inbox.config.durable_name == f"{prefix}-agent-bob"
    assert inbox.config.filter_subject == f"{prefix}.agent.bob"
    assert inbox.config.ack_policy == api.AckPolicy.EXPLICIT
    assert inbox.config.deliver_group == f"{prefix}-agent-bob"  # instances share the inbox

    broadcast = await js.consumer_info(doc_stream(prefix, "broadcast"), f"{prefix}-broadcast-bob")
    assert broadcast.config.durable_name == f"{prefix}-broadcast-bob"
    assert broadcast.config.deliver_policy == api.DeliverPolicy.NEW
    assert broadcast.config.ack_policy == api.AckPolicy.EXPLICIT

    url = f"{nats_server.monitor_url}/connz?subs=detail&limit=1000"
    connz = json.loads(
        await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=2).read())
    )
    subs = [s for c in connz["connections"] for s in c.get("subscriptions_list_detail", [])]
    rpc = [s for s in subs if s["subject"] == f"{prefix}.rpc.bob"]
    assert [s.get("qgroup") for s in rpc] == [f"{prefix}-rpc-bob"]


# -- aclbus → doc client ------------------------------------------------------------------------


async def test_what_aclbus_sends_to_inboxes_decodes_by_the_doc(
    make_bus: Callable[..., Awaitable[Bus]], nc: Client, prefix: str
) -> None:
    """Every envelope field, read back from the stream with a plain consumer: §3-§7."""
    bus = await make_bus()
    reply_by = datetime.now(UTC) + timedelta(minutes=1)
    sent = ACLMessage(
        performative=Performative.CFP,
        sender_id="alice",
        receiver_id="bob",
        receivers=("carol",),
        correlation_id="conv-9",
        reply_to="alice-desk",
        reply_with="alice-q9",
        in_reply_to="carol-q1",
        reply_by=reply_by,
        ttl=90,
        priority=7,
        retry_count=2,
        protocol="fipa-contract-net",
        message_type="task.translate",
        topic="orders.eu.created",
        routing_key="customer-17",
        language="json",
        ontology="translation",
        headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
        extensions={"deadline-policy": "strict"},
        payload={"text": "Bonjour", "n": [1, 2.5, None, True]},
    )
    acks = await bus.send(sent)
    assert [a.stream for a in acks] == [doc_stream(prefix, "agent")] * 2

    js = nc.jetstream()
    stored = await plain_read(js, doc_stream(prefix, "agent"), f"{prefix}.agent.>", 2)
    # priority 7: the receivers' priority lanes (wire-format §2)
    assert [m.subject for m in stored] == [
        f"{prefix}.agent.bob.high",
        f"{prefix}.agent.carol.high",
    ]
    # §7: one copy per receiver in one stream, each with its own dedup key.
    assert [m.headers["Nats-Msg-Id"] for m in stored] == [
        f"{sent.message_id}:bob",
        f"{sent.message_id}:carol",
    ]
    for msg in stored:
        # §3: writers write names in lower case (nats-* belong to NATS, §3.4).
        assert all(n == n.lower() for n in msg.headers if not n.lower().startswith("nats-"))
        envelope, payload = doc_decode(msg.headers, msg.data)
        assert envelope == {
            "ce-specversion": "1.0",
            "ce-id": sent.message_id,
            "ce-source": "alice",
            "ce-type": "fipa.acl.cfp",
            "ce-time": doc_time(sent.timestamp),
            "content-type": "application/json",
            "acl-version": "1.0",
            "acl-receiver-id": "bob",
            "acl-receivers": "carol",
            "acl-priority": "7",
            "acl-retry-count": "2",
            "acl-ttl": "90.0",
            "acl-reply-by": doc_time(reply_by),
            "acl-correlation-id": "conv-9",
            "acl-reply-to": "alice-desk",
            "acl-reply-with": "alice-q9",
            "acl-in-reply-to": "carol-q1",
            "acl-protocol": "fipa-contract-net",
            "acl-message-type": "task.translate",
            "acl-topic": "orders.eu.created",
            "acl-routing-key": "customer-17",
            "acl-language": "json",
            "acl-ontology": "translation",
            "acl-deadline-policy": "strict",
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        }
        assert payload == {"text": "Bonjour", "n": [1, 2.5, None, True]}
        # The TTL also goes to JetStream as a per-message TTL (§3.4; nats-server >= 2.11).
        assert msg.headers["Nats-TTL"] == "90s"


async def test_what_aclbus_broadcasts_decodes_by_the_doc(
    make_bus: Callable[..., Awaitable[Bus]], nc: Client, prefix: str
) -> None:
    """A broadcast: stored once on ``{prefix}.broadcast``; only the defaults are left out."""
    bus = await make_bus()
    sent = ACLMessage(performative="inform", sender_id="alice", payload=None)
    ack = await bus.broadcast(sent)
    assert ack.stream == doc_stream(prefix, "broadcast")

    js = nc.jetstream()
    [msg] = await plain_read(js, doc_stream(prefix, "broadcast"), f"{prefix}.broadcast", 1)
    envelope, payload = doc_decode(msg.headers, msg.data)
    # §3.1: the required headers and the three optional ones aclbus always writes.
    assert envelope == {
        "ce-specversion": "1.0",
        "ce-id": sent.message_id,
        "ce-source": "alice",
        "ce-type": "fipa.acl.inform",
        "ce-time": doc_time(sent.timestamp),
        "content-type": "application/json",
        "acl-version": "1.0",
    }
    assert msg.headers["Nats-Msg-Id"] == sent.message_id
    assert payload is None


async def test_aclbus_request_served_by_a_plain_nats_agent(
    make_bus: Callable[..., Awaitable[Bus]], nc: Client, prefix: str
) -> None:
    """A non-Python agent serves ``{prefix}.rpc.carol`` in its queue group, by the doc alone."""
    seen: list[tuple[dict[str, str], Any, dict[str, str]]] = []

    async def serve(msg: Any) -> None:
        request, payload = doc_decode(msg.headers, msg.data)
        seen.append((request, payload, dict(msg.headers)))
        reply = doc_headers(  # §9, built by hand
            ce_specversion="1.0",
            ce_id=str(uuid.uuid4()),
            ce_source="carol",
            ce_type="fipa.acl.inform",
            ce_time=doc_time(datetime.now(UTC)),
            acl_receiver_id=request["ce-source"],
            acl_correlation_id=request.get("acl-correlation-id", request["ce-id"]),
            acl_in_reply_to=request.get("acl-reply-with", request["ce-id"]),
        )
        await nc.publish(msg.reply, json.dumps({"sum": sum(payload)}).encode(), headers=reply)

    await nc.subscribe(f"{prefix}.rpc.carol", queue=f"{prefix}-rpc-carol", cb=serve)
    await nc.flush()
    bus = await make_bus()

    question = ACLMessage(
        performative="query-ref", sender_id="alice", receiver_id="carol", payload=[1, 2, 3]
    )
    answer = await bus.request(question, timeout=WAIT)

    [(request, payload, raw)] = seen
    assert request["ce-id"] == question.message_id
    assert request["ce-type"] == "fipa.acl.query-ref"
    assert (request["ce-source"], request["acl-receiver-id"]) == ("alice", "carol")
    assert not any(name.lower().startswith("nats-") for name in raw)  # §7: core NATS
    assert payload == [1, 2, 3]
    assert answer.performative is Performative.INFORM
    assert (answer.sender_id, answer.receiver_id) == ("carol", "alice")
    assert answer.correlation_id == question.message_id
    assert answer.in_reply_to == question.message_id
    assert answer.payload == {"sum": 6}


# -- hostile frames: a connection written by hand (raw_client.py) ------------------------------


@pytest_asyncio.fixture
async def raw(nats_server: EmbeddedServer) -> AsyncIterator[RawConnection]:
    conn = await RawConnection.open(nats_server.url)
    yield conn
    await conn.close()


async def test_a_header_given_twice_or_unreadable_on_the_wire_is_refused(
    make_bus: Callable[..., Awaitable[Bus]], raw: RawConnection, prefix: str
) -> None:
    """§3: two ``ce-source`` lines (nats-py would keep the last: a spoofed sender), a name
    that is not UTF-8 (nats-py would drop it), a line with no name: each refused as
    ``malformed-headers``, never answered to a claimed sender, and the agent goes on."""
    bus = await make_bus()
    got = listen(bus, "svc")
    await bus.agent("svc").start()
    await raw.sub(f"{prefix}.agent.alice", 1)
    await raw.sub(f"{prefix}.agent.mallory", 2)
    inbox = f"{prefix}.agent.svc"
    spoofs = [
        (b"ce-source: alice", b"ce-source: mallory"),
        (b"ce-source: alice", b"ce-source\xff: mallory"),
        (b"ce-source: alice", b"CE-SOURCE: alice"),
        (b"ce-source: alice", b"acl-reply-to: mallory", b"acl-reply-to: alice"),
        (b"ce-source: alice", b"this line has no colon"),
    ]
    for lines in spoofs:
        await raw.hpub(inbox, raw_block(*raw_envelope(), *lines), b"{}")
    await bus.send(ACLMessage(performative="inform", sender_id="alice", receiver_id="svc"))
    [handled] = await got.wait_for(1)
    assert handled.sender_id == "alice"

    async def all_dead() -> bool:
        return len(await bus.dead_letters.list(origin="svc")) == len(spoofs)

    await eventually(all_dead, timeout=WAIT, what="every spoof dead-lettered")
    letters = await bus.dead_letters.list(origin="svc")
    assert {letter.reason for letter in letters} == {"malformed-headers"}
    errors = sorted((letter.error or "").split(":")[0] for letter in letters)
    assert errors == ["acl-reply-to", "ce-source", "ce-source", "ce-source\\xff", "headers"]
    for letter in letters:
        with pytest.raises(MalformedHeaders):
            letter.message(bus)  # read back from the DLQ stream, still refused
        with pytest.raises(MalformedHeaders):
            await bus.dead_letters.replay(letter.sequence)  # replaying would launder it
    await asyncio.sleep(0.5)
    assert [m for m in raw.messages if ".agent." in m[0]] == []  # nobody was answered
    assert len(got) == 1


async def test_a_spoofed_request_is_answered_on_its_reply_subject_only(
    make_bus: Callable[..., Awaitable[Bus]], raw: RawConnection, prefix: str
) -> None:
    """The requester waits on its reply subject; it hears why, and no claimed sender does."""
    bus = await make_bus()
    got = listen(bus, "svc", answer="inform")
    await bus.agent("svc").start()
    await raw.sub("_RAW.>", 1)
    await raw.sub(f"{prefix}.agent.*", 2)
    block = raw_block(*raw_envelope("fipa.acl.request"), b"ce-source: alice", b"ce-source: eve")
    await raw.hpub(f"{prefix}.rpc.svc", block, b"{}", reply="_RAW.1")
    answer_block, body = await raw.wait_message("_RAW.1")
    answer = raw_headers(answer_block)
    assert answer["ce-type"] == ["fipa.acl.not-understood"]
    assert answer["ce-source"] == ["svc"]
    assert "acl-receiver-id" not in answer  # who sent it is what is not known
    payload = json.loads(body)
    assert payload["field"] == "ce-source"
    assert "more than once" in payload["reason"]
    await asyncio.sleep(0.3)
    assert [m for m in raw.messages if ".agent." in m[0]] == []
    assert len(got) == 0


async def test_status_frames_are_not_messages(
    make_bus: Callable[..., Awaitable[Bus]], raw: RawConnection, prefix: str
) -> None:
    """A ``NATS/1.0 503`` or ``100`` frame on an agent's request subject is no message: no
    handler, no dead letter, no answer, and the connection reads on (nats-py alone stops
    reading for good at a status that is not UTF-8). Published to the inbox, JetStream
    stores it without its header block (nats-server 2.15): a message without headers,
    refused as malformed."""
    bus = await make_bus()
    got = listen(bus, "svc", answer="inform")
    await bus.agent("svc").start()
    await raw.sub("_RAW.>", 1)
    rpc = f"{prefix}.rpc.svc"
    await raw.hpub(rpc, b"NATS/1.0 503\r\n\r\n", reply="_RAW.status")
    await raw.hpub(rpc, b"NATS/1.0 100 Idle Heartbeat\r\n\r\n", b"{}", reply="_RAW.status")
    await raw.hpub(rpc, b"NATS/1.0 404 No Messages\r\n" + raw_block(*raw_envelope())[10:])
    # nats-py itself fails on a status that is not UTF-8, which would end its reading task
    await raw.hpub(rpc, b"NATS/1.0 \xff\xfe\xfd\r\n\r\n", reply="_RAW.status")
    await raw.hpub(f"{prefix}.agent.svc", b"NATS/1.0 503\r\n\r\n")
    # A good request after them is answered: the subscription goes on.
    good = raw_block(*raw_envelope("fipa.acl.request"), b"ce-source: alice")
    await raw.hpub(rpc, good, b"{}", reply="_RAW.good")
    answer, _ = await raw.wait_message("_RAW.good")
    assert raw_headers(answer)["ce-type"] == ["fipa.acl.inform"]

    async def stored_one_refused() -> bool:
        return len(await bus.dead_letters.list(origin="svc")) == 1

    await eventually(stored_one_refused, timeout=WAIT, what="the headerless inbox message")
    await asyncio.sleep(0.5)
    [letter] = await bus.dead_letters.list(origin="svc")
    assert (letter.reason, letter.subject) == ("malformed", f"{prefix}.agent.svc")
    assert (letter.error or "").startswith("headers: missing")
    assert [m for m in raw.messages if m[0] == "_RAW.status"] == []
    assert len(got) == 1  # the good request only
