"""The metrics plugin on the memory engine and on a real nats-server.

The same traffic runs on both: sends that are handled, one that fails, is retried twice and is
dead-lettered, a request that is answered, one that times out and one nobody serves. The
exposition is read back with ``prometheus_client``'s parser.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

import aclbus_metrics
from aclbus import ACLMessage, Bus, Performative, Settings, hookimpl
from aclbus.errors import NoResponders, RequestTimeout
from aclbus.middleware import ConsumeNext, Delivery, Middleware, MiddlewareFactory
from aclbus.testing import MemoryConfig, eventually
from aclbus_nats.testing import NatsConfig

pytestmark = pytest.mark.asyncio

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: bytes | str) -> Samples:
    """Every sample of ``text``, keyed by its name and its labels."""
    if isinstance(text, bytes):
        text = text.decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name`` whose labels include ``labels``, summed over the others."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


# `stream`: the consumer gauges, one series per stream (a handful per namespace), never per agent.
ALLOWED_LABELS = {"performative", "message_type", "outcome", "backend", "error", "le", "stream"}


class Flaky(Exception):
    """The handler's error."""


class RetryTwice(Middleware):
    """A retry plugin in miniature: the first two failures are nacked, the third is not."""

    async def consume(self, delivery: Delivery, call_next: ConsumeNext) -> None:
        try:
            await call_next(delivery)
        except Exception:
            if delivery.attempt < 3:
                await delivery.nack(0.0)
            raise


class RetryTwicePlugin:
    @hookimpl
    def aclbus_middlewares(self, settings: Settings) -> Sequence[MiddlewareFactory]:
        return [lambda bus: RetryTwice()]


def inform(message_type: str, receiver: str = "worker") -> ACLMessage:
    return ACLMessage(
        performative=Performative.INFORM,
        sender_id="tester",
        receiver_id=receiver,
        message_type=message_type,
    )


def ask(receiver: str) -> ACLMessage:
    return ACLMessage(
        performative=Performative.REQUEST,
        sender_id="tester",
        receiver_id=receiver,
        message_type="question",
    )


class MetricsCases:
    backend_name: ClassVar[str]

    def make_bus(self, *, plugins: Sequence[object] = (), **settings: Any) -> Bus:
        raise NotImplementedError

    async def advance(self, seconds: float) -> None:
        raise NotImplementedError

    async def drive(self, bus: Bus) -> Samples:
        """The traffic of these tests on ``bus``; the exposition once it has settled."""
        worker = bus.agent("worker")
        handled: list[str] = []
        release = asyncio.Event()

        @worker.on(Performative.INFORM, message_type="ok")
        async def ok(msg: ACLMessage) -> None:
            handled.append(msg.message_id)

        @worker.on(Performative.INFORM, message_type="flaky")
        async def flaky(msg: ACLMessage) -> None:
            raise Flaky("always")

        @bus.agent("responder").on(Performative.REQUEST)
        async def answer(msg: ACLMessage) -> ACLMessage:
            return msg.reply(Performative.INFORM, payload="yes")

        @bus.agent("sleeper").on(Performative.REQUEST)
        async def slow(msg: ACLMessage) -> None:
            await release.wait()

        async with bus:
            for _ in range(5):
                await bus.send(inform("ok"))
            await bus.send(inform("flaky"))
            reply = await bus.request(ask("responder"), timeout=5.0)
            assert reply.payload == "yes"
            with pytest.raises(NoResponders):
                await bus.request(ask("nobody"), timeout=5.0)
            waiting = asyncio.ensure_future(bus.request(ask("sleeper"), timeout=0.3))
            await asyncio.sleep(0)
            await self.advance(0.5)
            with pytest.raises(RequestTimeout):
                await asyncio.wait_for(waiting, 5.0)
            release.set()
            await eventually(
                lambda: len(handled) == 5 and bus.stats.dead_lettered == 1,
                timeout=10.0,
                what="the sends handled and the flaky one dead-lettered",
            )
            samples = parse(aclbus_metrics.exposition(aclbus_metrics.registry(bus)))
        return samples

    async def test_traffic_is_counted_with_bounded_labels(self) -> None:
        bus = self.make_bus(plugins=[aclbus_metrics, RetryTwicePlugin()])
        samples = await self.drive(bus)
        b = self.backend_name
        sent = "aclbus_messages_sent_total"
        settled = "aclbus_messages_settled_total"
        assert value(samples, sent, message_type="ok", performative="inform", backend=b) == 5
        assert value(samples, sent, message_type="flaky") == 1
        assert value(samples, "aclbus_messages_received_total", message_type="ok") == 5
        assert value(samples, settled, message_type="ok", outcome="acked") == 5
        assert value(samples, settled, message_type="flaky", outcome="nacked") == 2
        assert value(samples, settled, message_type="flaky", outcome="failed") == 1
        assert value(samples, settled, message_type="flaky", outcome="acked") == 0
        assert value(samples, "aclbus_messages_retried_total", message_type="flaky") == 2
        assert value(samples, "aclbus_messages_retried_total", message_type="ok") == 0
        assert value(samples, "aclbus_messages_dead_lettered_total", backend=b) == 1
        assert value(samples, "aclbus_handler_failures_total") == 3
        requests = "aclbus_requests_total"
        assert value(samples, requests, outcome="replied") == 1
        assert value(samples, requests, outcome="timeout") == 1
        assert value(samples, requests, outcome="no_responders") == 1
        assert value(samples, requests, outcome="error") == 0
        assert value(samples, "aclbus_request_duration_seconds_count") == 3
        latency = "aclbus_message_latency_seconds_count"
        assert value(samples, latency, message_type="ok", performative="inform") == 5
        assert value(samples, "aclbus_handler_duration_seconds_count", message_type="ok") == 5
        buckets = sorted(
            (float(dict(ls)["le"]), v)
            for (n, ls), v in samples.items()
            if n == "aclbus_message_latency_seconds_bucket" and ("message_type", "ok") in ls
        )
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
        assert buckets[-1] == (float("inf"), 5)
        assert value(samples, "aclbus_connected", backend=b) == 1  # read while it runs
        label_names = {name for _, labels in samples for name, _ in labels}
        assert label_names <= ALLOWED_LABELS
        assert {v for _, ls in samples for k, v in ls if k == "backend"} == {b}
        assert {v for _, ls in samples for k, v in ls if k == "outcome"} <= {
            "acked",
            "nacked",
            "terminated",
            "failed",
            "unsettled",
            "replied",
            "timeout",
            "no_responders",
            "error",
        }

    async def test_the_agent_label_is_opt_in(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ACLBUS_METRICS__AGENT_LABEL", "true")
        bus = self.make_bus(plugins=[aclbus_metrics])
        got: list[str] = []

        @bus.agent("worker").on(Performative.INFORM)
        async def take(msg: ACLMessage) -> None:
            got.append(msg.message_id)

        async with bus:
            await bus.send(inform("ok"))
            await eventually(lambda: len(got) == 1, what="the message handled")
            await aclbus_metrics.poll(bus)
            samples = parse(aclbus_metrics.exposition(aclbus_metrics.registry(bus)))
        assert value(samples, "aclbus_messages_received_total", agent="worker") == 1
        pending = [ls for (n, ls) in samples if n == "aclbus_consumer_pending"]
        consumers = {v for ls in pending for k, v in ls if k == "consumer"}
        assert f"{bus.settings.subject_prefix}-agent-worker" in consumers  # its inbox consumer
        assert value(samples, "aclbus_messages_sent_total", agent="worker") == 0  # sends: none

    async def test_the_backlog_is_polled_on_its_own_while_the_bus_runs(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # No explicit poll: a scrape alone must see the backlog (the alerts read it).
        monkeypatch.setenv("ACLBUS_METRICS__POLL_INTERVAL", "0.1")
        bus = self.make_bus(plugins=[aclbus_metrics])
        release = asyncio.Event()

        @bus.agent("worker").on(Performative.INFORM)
        async def hold(msg: ACLMessage) -> None:
            await release.wait()

        def backlog() -> float:
            samples = parse(aclbus_metrics.exposition(aclbus_metrics.registry(bus)))
            return value(samples, "aclbus_consumer_pending") + value(
                samples, "aclbus_consumer_ack_pending"
            )

        async with bus:
            try:
                for _ in range(2):
                    await bus.send(inform("ok"))
                await eventually(lambda: backlog() == 2, timeout=5.0, what="the backlog seen")
            finally:
                release.set()  # else the held handlers keep the bus from stopping
            await eventually(lambda: backlog() == 0, timeout=10.0, what="the backlog drained")

    async def test_the_backlog_is_polled_from_the_consumers(self) -> None:
        bus = self.make_bus(plugins=[aclbus_metrics])
        release = asyncio.Event()
        done: list[str] = []

        @bus.agent("worker").on(Performative.INFORM)
        async def hold(msg: ACLMessage) -> None:
            await release.wait()
            done.append(msg.message_id)

        def backlog(samples: Samples) -> float:
            return value(samples, "aclbus_consumer_pending") + value(
                samples, "aclbus_consumer_ack_pending"
            )

        async with bus:
            reg = aclbus_metrics.registry(bus)
            for _ in range(3):
                await bus.send(inform("ok"))
            await aclbus_metrics.poll(bus)
            held = parse(aclbus_metrics.exposition(reg))
            release.set()
            await eventually(lambda: len(done) == 3, what="the messages handled")

            async def drained() -> bool:
                await aclbus_metrics.poll(bus)
                return backlog(parse(aclbus_metrics.exposition(reg))) == 0

            await eventually(drained, timeout=10.0, what="the backlog polled as empty")
        assert backlog(held) == 3
        streams = {
            v for (n, ls) in held if n == "aclbus_consumer_pending" for k, v in ls if k == "stream"
        }
        assert len(streams) >= 1  # a series per stream, not per agent
        assert {k for (n, ls) in held if n.startswith("aclbus_consumer_") for k, _ in ls} == {
            "backend",
            "stream",
        }
        assert value(held, "aclbus_reconnects_total", backend=self.backend_name) == 0

    async def test_disabled_it_adds_no_middleware(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("ACLBUS_METRICS__ENABLED")
        bus = self.make_bus(plugins=[aclbus_metrics])
        async with bus:
            assert bus.middlewares == []
            assert not bus.consume_pipeline.has_middleware
            with pytest.raises(Exception, match="not active"):
                aclbus_metrics.registry(bus)


class TestOnMemory(MemoryConfig, MetricsCases):
    backend_name = "memory"


class TestOnNats(NatsConfig, MetricsCases):
    backend_name = "nats"

    async def test_connected_while_running(self) -> None:
        bus = self.make_bus(plugins=[aclbus_metrics])
        async with bus:
            up = parse(aclbus_metrics.exposition(aclbus_metrics.registry(bus)))
        down = parse(aclbus_metrics.exposition(aclbus_metrics.registry(bus)))
        assert value(up, "aclbus_connected", backend="nats") == 1
        assert value(down, "aclbus_connected", backend="nats") == 0
