"""Spans across agents on two buses, on the memory engine and on a real nats-server.

Every bus of a test has the plugin with one SDK `TracerProvider` whose spans go to an
`InMemorySpanExporter` (through a `SimpleSpanProcessor`, so a span is exported when it ends).
Each agent lives on a bus of its own, as agents of different processes would.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
import tomli_w
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import aclbus_signing
import aclbus_tracing
from aclbus import ACLMessage, Bus, Delivery, Performative, wire
from aclbus.errors import RequestTimeout
from aclbus.testing import Collector, MemoryConfig, eventually
from aclbus_nats.testing import NatsConfig
from aclbus_retry import RetryPlugin, RetrySettings
from aclbus_signing import PrivateKey
from aclbus_tracing import TracingPlugin, TracingSettings

pytestmark = pytest.mark.asyncio


class Broken(Exception):
    """What a handler of these tests raises."""


def inform(sender: str, receiver: str, **fields: Any) -> ACLMessage:
    return ACLMessage(
        performative=Performative.INFORM, sender_id=sender, receiver_id=receiver, **fields
    )


def one(spans: list[ReadableSpan], kind: SpanKind, **attributes: Any) -> ReadableSpan:
    """The one span of ``kind`` whose attributes include ``attributes``."""
    found = [
        s
        for s in spans
        if s.kind is kind and all((s.attributes or {}).get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, f"{len(found)} {kind} spans with {attributes}: {names(spans)}"
    return found[0]


def collect(agent: Any, got: Collector[ACLMessage]) -> None:
    """Have ``agent`` put every inform it handles into ``got``."""

    @agent.on(Performative.INFORM)
    async def keep(msg: ACLMessage) -> None:
        got.add(msg)


def sign_as_alice(folder: Path) -> None:
    """Write ./aclbus.toml: signing required, alice signs with a new key pinned for her."""
    key = PrivateKey.generate()
    seed = folder / "alice.seed"
    seed.write_text(key.seed_text() + "\n")
    seed.chmod(0o600)
    pinned = folder / "keys.toml"
    pinned.write_text(tomli_w.dumps({"alice": [key.key_id]}))
    signing = {"mode": "require", "keys_file": str(pinned), "agent_key_files": {"alice": str(seed)}}
    Path("aclbus.toml").write_text(tomli_w.dumps({"signing": signing}))


def names(spans: list[ReadableSpan]) -> list[str]:
    return [f"{s.kind.name} {s.name} {dict(s.attributes or {})}" for s in spans]


class TracingCases:
    """What tracing does on any backend; mixed with a backend config."""

    make_bus: Any
    advance: Any
    name: str

    @pytest.fixture
    def exporter(self) -> Iterator[InMemorySpanExporter]:
        exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        yield exporter
        self.provider.shutdown()

    def traced_bus(self, *plugins: object, **settings: Any) -> Bus:
        return self.make_bus(plugins=[TracingPlugin(self.provider, **settings), *plugins])

    async def spans(self, exporter: InMemorySpanExporter, count: int) -> list[ReadableSpan]:
        """The finished spans once there are ``count`` of them (and no more soon after)."""

        def enough() -> bool:
            return len(exporter.get_finished_spans()) >= count

        await eventually(enough, what=f"{count} spans")
        await self.advance(0.05)
        found = list(exporter.get_finished_spans())
        assert len(found) == count, names(found)
        return found

    async def test_send_and_handle_are_one_trace_parent_and_child(
        self, exporter: InMemorySpanExporter
    ) -> None:
        """alice sends, bob handles: PRODUCER then CONSUMER, its child, with the conventions."""
        got: Collector[ACLMessage] = Collector()
        async with self.traced_bus() as alice_bus, self.traced_bus() as bob_bus:
            bob = bob_bus.agent("bob")
            collect(bob, got)
            await bob.start()
            sent = inform("alice", "bob", correlation_id="conv-7")
            await alice_bus.send(sent)
            [received] = await got.wait_for(1)
            spans = await self.spans(exporter, 2)
        send = one(spans, SpanKind.PRODUCER)
        handle = one(spans, SpanKind.CONSUMER)
        assert received.headers["traceparent"].split("-")[2] == f"{send.context.span_id:016x}"
        assert handle.parent is not None
        assert handle.parent.span_id == send.context.span_id
        assert handle.context.trace_id == send.context.trace_id
        assert send.parent is None
        for span, operation in ((send, "send"), (handle, "process")):
            attributes = dict(span.attributes or {})
            assert attributes["messaging.system"] == self.name
            assert attributes["messaging.operation.type"] == operation
            assert attributes["messaging.message.id"] == sent.message_id
            assert attributes["messaging.message.conversation_id"] == "conv-7"
            assert attributes["aclbus.performative"] == "inform"
            assert "bob" in str(attributes["messaging.destination.name"])
        assert dict(handle.attributes or {})["aclbus.agent"] == "bob"
        assert dict(handle.attributes or {})["aclbus.settlement"] == "ack"
        assert send.name == "send inform"
        assert handle.name == "process inform"
        assert handle.status.status_code is StatusCode.UNSET

    async def test_a_hop_continues_the_trace(self, exporter: InMemorySpanExporter) -> None:
        """alice -> bob -> carol: bob's forward is a child of bob's handling span."""
        got: Collector[ACLMessage] = Collector()
        async with (
            self.traced_bus() as alice_bus,
            self.traced_bus() as bob_bus,
            self.traced_bus() as carol_bus,
        ):
            bob = bob_bus.agent("bob")

            @bob.on(Performative.INFORM)
            async def forward(msg: ACLMessage) -> None:
                await bob_bus.send(inform("bob", "carol", payload=msg.payload))

            carol = carol_bus.agent("carol")
            collect(carol, got)
            await bob.start()
            await carol.start()
            first = inform("alice", "bob", payload="hello")
            await alice_bus.send(first)
            await got.wait_for(1)
            spans = await self.spans(exporter, 4)
        sent = one(spans, SpanKind.PRODUCER, **{"messaging.message.id": first.message_id})
        at_bob = one(spans, SpanKind.CONSUMER, **{"aclbus.agent": "bob"})
        forwarded = one(spans, SpanKind.PRODUCER, **{"aclbus.sender_id": "bob"})
        at_carol = one(spans, SpanKind.CONSUMER, **{"aclbus.agent": "carol"})
        chain = [sent, at_bob, forwarded, at_carol]
        assert {s.context.trace_id for s in spans} == {sent.context.trace_id}
        for parent, child in itertools.pairwise(chain):
            assert child.parent is not None
            assert child.parent.span_id == parent.context.span_id, names(chain)

    async def test_request_reply_is_one_trace_and_the_reply_links_back(
        self, exporter: InMemorySpanExporter
    ) -> None:
        """CLIENT request, the responder's CONSUMER child, its reply PRODUCER; linked back."""
        async with self.traced_bus() as client_bus, self.traced_bus() as server_bus:
            server = server_bus.agent("server")

            @server.on(Performative.QUERY_REF)
            async def answer(msg: ACLMessage) -> ACLMessage:
                return msg.reply(Performative.INFORM, payload=42)

            await server.start()
            question = ACLMessage(
                performative=Performative.QUERY_REF, sender_id="client", receiver_id="server"
            )
            reply = await client_bus.request(question, timeout=5)
            assert reply.payload == 42
            spans = await self.spans(exporter, 3)
        request = one(spans, SpanKind.CLIENT)
        handle = one(spans, SpanKind.CONSUMER)
        answered = one(spans, SpanKind.PRODUCER)
        assert {s.context.trace_id for s in spans} == {request.context.trace_id}
        assert handle.parent is not None
        assert handle.parent.span_id == request.context.span_id
        assert answered.parent is not None
        assert answered.parent.span_id == handle.context.span_id
        assert [link.context.span_id for link in request.links] == [answered.context.span_id]
        assert dict(request.attributes or {})["messaging.operation.name"] == "request"
        assert answered.name == "send inform"

    async def test_a_failing_handler_records_the_error(
        self, exporter: InMemorySpanExporter
    ) -> None:
        """The handler raises: its span has status ERROR and an exception event."""
        tried: Collector[int] = Collector()
        async with self.traced_bus() as alice_bus, self.traced_bus() as bob_bus:
            bob = bob_bus.agent("bob")

            @bob.on(Performative.INFORM)
            async def broken(msg: ACLMessage, delivery: Delivery) -> None:
                tried.add(delivery.attempt)
                raise Broken("the ledger is closed, password=hunter2")

            await bob.start()
            await alice_bus.send(inform("alice", "bob"))
            await tried.wait_for(1)
            spans = await self.spans(exporter, 2)
        handle = one(spans, SpanKind.CONSUMER)
        assert handle.status.status_code is StatusCode.ERROR
        [event] = [e for e in handle.events if e.name == "exception"]
        attributes = dict(event.attributes or {})
        assert str(attributes["exception.type"]).endswith("Broken")
        assert attributes["exception.message"] == "the ledger is closed, password=***"
        assert "test_tracing.py" in str(attributes["exception.stacktrace"])
        assert "hunter2" not in str(attributes["exception.stacktrace"])
        assert "hunter2" not in str(handle.status.description)

    async def test_a_request_nobody_answers_is_an_error_span(
        self, exporter: InMemorySpanExporter
    ) -> None:
        """A request that times out: its CLIENT span has status ERROR and the exception."""
        release = asyncio.Event()
        async with self.traced_bus() as client_bus, self.traced_bus() as server_bus:
            server = server_bus.agent("server")

            @server.on(Performative.QUERY_REF)
            async def silent(msg: ACLMessage, delivery: Delivery) -> None:
                await release.wait()  # until the request has given up

            await server.start()
            question = ACLMessage(
                performative=Performative.QUERY_REF, sender_id="client", receiver_id="server"
            )
            request = asyncio.ensure_future(client_bus.request(question, timeout=0.3))
            for _ in range(20):  # at most 2 s of the backend's time
                if request.done():
                    break
                await self.advance(0.1)
            with pytest.raises(RequestTimeout):
                await request
            release.set()
            spans = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
        [span] = spans
        assert span.status.status_code is StatusCode.ERROR
        assert [e.name for e in span.events] == ["exception"]

    async def test_retries_are_new_spans_in_the_same_trace(
        self, exporter: InMemorySpanExporter
    ) -> None:
        """Under the retry plugin: one handling span per attempt, all children of the send."""
        tried: Collector[int] = Collector()
        retry = RetryPlugin(RetrySettings(initial_interval=0.2, multiplier=1.0, jitter=0.0))
        async with self.traced_bus() as alice_bus, self.traced_bus(retry) as bob_bus:
            bob = bob_bus.agent("bob")

            @bob.on(Performative.INFORM)
            async def flaky(msg: ACLMessage, delivery: Delivery) -> None:
                tried.add(delivery.attempt)
                if delivery.attempt < 3:
                    raise Broken(f"try {delivery.attempt}")

            await bob.start()
            await alice_bus.send(inform("alice", "bob"))
            for _ in range(60):  # at most 6 s of the backend's time
                if len(tried) >= 3:
                    break
                await self.advance(0.1)
            assert tried.items == [1, 2, 3]
            spans = await self.spans(exporter, 4)
        send = one(spans, SpanKind.PRODUCER)
        handles = sorted(
            (s for s in spans if s.kind is SpanKind.CONSUMER),
            key=lambda s: (s.attributes or {})["aclbus.delivery.attempt"],
        )
        assert [(s.attributes or {})["aclbus.delivery.attempt"] for s in handles] == [1, 2, 3]
        assert [s.status.status_code for s in handles] == [
            StatusCode.ERROR,
            StatusCode.ERROR,
            StatusCode.UNSET,
        ]
        for handle in handles:
            assert handle.context.trace_id == send.context.trace_id
            assert handle.parent is not None
            assert handle.parent.span_id == send.context.span_id
        assert len({s.context.span_id for s in handles}) == 3

    async def test_off_emits_nothing_and_adds_no_header(
        self, exporter: InMemorySpanExporter
    ) -> None:
        """Disabled: no middleware on the bus, no span, no traceparent on the wire."""
        got: Collector[ACLMessage] = Collector()
        off = TracingSettings(enabled=False)
        async with (
            self.traced_bus(settings=off) as alice_bus,
            self.traced_bus(settings=off) as bob_bus,
        ):
            assert not any(isinstance(m, aclbus_tracing.Tracing) for m in alice_bus.middlewares)
            bob = bob_bus.agent("bob")
            collect(bob, got)
            await bob.start()
            await alice_bus.send(inform("alice", "bob"))
            [received] = await got.wait_for(1)
            await self.advance(0.1)
        assert exporter.get_finished_spans() == ()
        assert "traceparent" not in received.headers

    async def test_a_foreign_traceparent_is_continued(self, exporter: InMemorySpanExporter) -> None:
        """A message from a service in another language, with its traceparent, joins its trace."""
        got: Collector[ACLMessage] = Collector()
        parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        async with self.make_bus() as plain_bus, self.traced_bus() as bob_bus:
            bob = bob_bus.agent("bob")
            collect(bob, got)
            await bob.start()
            await plain_bus.send(inform("alice", "bob", headers={"traceparent": parent}))
            await got.wait_for(1)
            [handle] = await self.spans(exporter, 1)
        assert f"{handle.context.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert handle.parent is not None
        assert handle.parent.is_remote
        assert f"{handle.parent.span_id:016x}" == "00f067aa0ba902b7"

    async def test_not_propagating_every_handle_is_a_root(
        self, exporter: InMemorySpanExporter
    ) -> None:
        """``propagate=false``: spans, but no traceparent, and the handling span has no parent."""
        got: Collector[ACLMessage] = Collector()
        quiet = TracingSettings(enabled=True, propagate=False)
        async with (
            self.traced_bus(settings=quiet) as alice_bus,
            self.traced_bus(settings=quiet) as bob_bus,
        ):
            bob = bob_bus.agent("bob")
            collect(bob, got)
            await bob.start()
            await alice_bus.send(inform("alice", "bob"))
            [received] = await got.wait_for(1)
            spans = await self.spans(exporter, 2)
        assert "traceparent" not in received.headers
        send = one(spans, SpanKind.PRODUCER)
        handle = one(spans, SpanKind.CONSUMER)
        assert handle.parent is None
        assert handle.context.trace_id != send.context.trace_id

    async def test_the_signature_covers_the_traceparent(
        self, exporter: InMemorySpanExporter, tmp_path: Path
    ) -> None:
        """With aclbus-signing in mode require: traced messages verify and are handled."""
        sign_as_alice(tmp_path)
        got: Collector[ACLMessage] = Collector()
        async with (
            self.traced_bus(aclbus_signing) as alice_bus,
            self.traced_bus(aclbus_signing) as bob_bus,
        ):
            bob = bob_bus.agent("bob")
            collect(bob, got)
            await bob.start()
            await alice_bus.send(inform("alice", "bob"))
            [received] = await got.wait_for(1)
            spans = await self.spans(exporter, 2)
            assert aclbus_signing.stats(bob_bus).refused == 0
        assert "aclbus-signature" in received.headers  # it was signed, and verified
        send = one(spans, SpanKind.PRODUCER)
        handle = one(spans, SpanKind.CONSUMER)
        assert received.headers["traceparent"].split("-")[2] == f"{send.context.span_id:016x}"
        assert handle.parent is not None
        assert handle.parent.span_id == send.context.span_id


class TestMemory(MemoryConfig, TracingCases):
    pass


class TestNats(NatsConfig, TracingCases):
    async def test_a_go_style_capitalised_traceparent_joins_the_trace(
        self, exporter: InMemorySpanExporter
    ) -> None:
        """Published with plain nats-py as nats.go writes names (``Traceparent``, ``Ce-Id``)."""
        got: Collector[ACLMessage] = Collector()
        parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        async with self.traced_bus() as bob_bus:
            bob = bob_bus.agent("bob")
            collect(bob, got)
            await bob.start()
            headers, body = wire.encode(inform("alice", "bob"), bob_bus.codecs)
            headers["traceparent"] = parent
            capitalised = {
                "-".join(p.capitalize() for p in name.split("-")): value
                for name, value in headers.items()
            }
            assert "Traceparent" in capitalised
            nc = await nats.connect(self._url)
            try:
                await nc.publish(bob_bus.subjects.inbox("bob"), body, headers=capitalised)
                await nc.flush()
            finally:
                await nc.close()
            await got.wait_for(1)
            [handle] = await self.spans(exporter, 1)
        assert f"{handle.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
        assert handle.parent is not None
        assert f"{handle.parent.span_id:016x}" == "b7ad6b7169203331"

    async def test_faststream_telemetry_adds_no_spans(self, exporter: InMemorySpanExporter) -> None:
        """FastStream's own telemetry middleware on the broker: aclbus' spans only, no twins.

        aclbus publishes and consumes with nats-py below FastStream's subscribers
        (``aclbus_nats.consuming``), so FastStream's middleware never sees those messages.
        """
        from faststream.nats.opentelemetry import NatsTelemetryMiddleware

        got: Collector[ACLMessage] = Collector()
        telemetry = NatsTelemetryMiddleware(tracer_provider=self.provider)
        async with self.traced_bus() as alice_bus, self.traced_bus() as bob_bus:
            for bus in (alice_bus, bob_bus):
                bus.backend.broker.add_middleware(telemetry)
            bob = bob_bus.agent("bob")
            collect(bob, got)
            await bob.start()
            await alice_bus.send(inform("alice", "bob"))
            await got.wait_for(1)
            spans = await self.spans(exporter, 2)
            await asyncio.sleep(0.2)
        assert sorted(s.kind.name for s in exporter.get_finished_spans()) == [
            "CONSUMER",
            "PRODUCER",
        ], names(spans)
        assert {s.instrumentation_scope.name for s in spans if s.instrumentation_scope} == {
            "aclbus_tracing"
        }

        # The middleware is live: FastStream's own publish through the same broker is traced.
        exporter.clear()
        async with self.traced_bus() as bus:
            broker = bus.backend.broker
            broker.add_middleware(telemetry)
            await broker.publish(b"x", self.core_subject("faststream"))
            await eventually(lambda: len(exporter.get_finished_spans()) >= 1, what="a span")
        own = exporter.get_finished_spans()
        assert SpanKind.PRODUCER in {s.kind for s in own}, names(list(own))
        scopes = {s.instrumentation_scope.name for s in own if s.instrumentation_scope}
        assert scopes, names(list(own))
        assert "aclbus_tracing" not in scopes
