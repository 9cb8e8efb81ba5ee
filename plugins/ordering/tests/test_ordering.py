"""Per-key order on a bus: on the memory engine with injected faults, and on a real nats-server.

`Scenarios` holds the tests that run on both backends; time passes through ``self.advance``
(the memory engine's manual clock, or real sleeps on NATS), so the memory runs take no wall
time. Each backend config adds the checks only it can make (fault counts on memory).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, ClassVar

import pytest

import aclbus_ordering
from aclbus import (
    ACLMessage,
    Bus,
    CapabilityError,
    ConfigurationError,
    Delivery,
    Middleware,
    Outgoing,
    Performative,
    PublishAck,
    Settings,
)
from aclbus.backend import Capabilities
from aclbus.backends.memory import Faults, MemoryBackend
from aclbus.middleware import MiddlewareFactory, PublishNext
from aclbus.plugin import hookimpl
from aclbus.testing import BackendConfig, MemoryConfig
from aclbus_nats.testing import NatsConfig
from aclbus_ordering import Gap, Ordering, OrderingPlugin, OrderingSettings

INFORM = Performative.INFORM
FAST = OrderingSettings(hold_wait=0.05, hold_delay=0.1, gap_timeout=2.0, start_timeout=0.5)


# -- helpers ---------------------------------------------------------------------------------


class Ledger:
    """An ordered handler's record: what ran, per key, and how much ran at once."""

    def __init__(self, pause: Callable[[], Any]) -> None:
        self.pause = pause
        self.seen: defaultdict[str, list[int]] = defaultdict(list)
        self.active: Counter[str] = Counter()
        self.most_per_key = 0
        self.most_keys_at_once = 0
        self.gaps: list[Gap] = []
        self.attempts: list[int] = []
        self.fail: set[int] = set()  # payload numbers whose handling raises
        self.count = 0

    def handled(self, count: int) -> bool:
        return self.count >= count

    async def handle(self, msg: ACLMessage, delivery: Delivery) -> None:
        self.attempts.append(delivery.attempt)
        if msg.payload["n"] in self.fail:
            raise RuntimeError("boom")
        key = str(msg.routing_key or msg.correlation_id)
        group = key.split(":")[0]
        self.active[group] += 1
        self.most_per_key = max(self.most_per_key, self.active[group])
        self.most_keys_at_once = max(
            self.most_keys_at_once, sum(1 for n in self.active.values() if n)
        )
        try:
            await self.pause()
            gap = delivery.state.get("ordering.gap")
            if gap is not None:
                self.gaps.append(gap)
            self.seen[key].append(msg.payload["n"])
            self.count += 1
        finally:
            self.active[group] -= 1


class Dropper(Middleware):
    """Keeps back the messages ``drop`` picks: numbered and never published, until released."""

    def __init__(self, drop: Callable[[ACLMessage], bool]) -> None:
        self.drop = drop
        self.kept: list[tuple[Outgoing, PublishNext]] = []

    async def publish(self, out: Outgoing, call_next: PublishNext) -> PublishAck:
        if self.drop(out.message):
            self.kept.append((out, call_next))
            return PublishAck()
        return await call_next(out)

    async def release(self) -> None:
        for out, call_next in self.kept:
            await call_next(out)


class DropperPlugin:
    def __init__(self, dropper: Dropper) -> None:
        self.dropper = dropper

    @hookimpl(trylast=True)  # inside the ordering middleware: messages are numbered first
    def aclbus_middlewares(self, settings: Settings) -> Sequence[MiddlewareFactory]:
        return [lambda bus: self.dropper]


def inform(n: int, *, key: str | None = "a", conversation: str | None = None) -> ACLMessage:
    return ACLMessage(
        performative=INFORM,
        sender_id="bank",
        receiver_id="ledger",
        routing_key=key,
        correlation_id=conversation,
        payload={"n": n},
    )


# -- scenarios on every backend --------------------------------------------------------------


class Scenarios(BackendConfig):
    """Tests every backend config runs."""

    concurrency: ClassVar[int] = 8
    max_deliver: ClassVar[int | None] = 10
    step: ClassVar[float] = 0.05
    steps: ClassVar[int] = 600

    async def pause(self) -> None:
        """What a handler does meanwhile: long enough for other handlers to start."""
        await asyncio.sleep(random.uniform(0, 0.002))

    def check_faults(self, bus: Bus, ordering: Ordering) -> None:
        """Backend-specific checks after the faulty run (the memory engine's fault counts)."""

    def consumer(
        self,
        *plugins: object,
        settings: OrderingSettings = FAST,
        ordered: Any = "routing_key",
        **bus_settings: Any,
    ) -> tuple[Bus, Ledger]:
        bus_settings.setdefault("handler_concurrency", self.concurrency)
        bus_settings.setdefault("max_deliver", self.max_deliver)
        bus = self.make_bus(plugins=[OrderingPlugin(settings), *plugins], **bus_settings)
        ledger = Ledger(self.pause)
        bus.agent("ledger").on(INFORM)(aclbus_ordering.ordered(key=ordered)(ledger.handle))
        return bus, ledger

    async def until(self, check: Callable[[], bool], what: str) -> None:
        for _ in range(self.steps):
            if check():
                return
            await self.advance(self.step)
        raise AssertionError(f"{what}: not reached after {self.steps} steps of {self.step} s")

    async def test_per_key_order_with_parallel_keys(self) -> None:
        """3 keys x 100 messages, 8 handlers at once: each key in publish order, one at a time;
        different keys overlap. Half the messages wait in the inbox before the agent starts,
        half come while it runs, the keys shuffled."""
        keys, count = ("a", "b", "c"), 100
        order = [key for key in keys for _ in range(count)]
        random.Random(3).shuffle(order)
        numbers: Counter[str] = Counter()
        bus, ledger = self.consumer()
        async with self.make_bus(plugins=[OrderingPlugin(FAST)]) as publisher:

            async def publish(part: list[str]) -> None:
                for key in part:
                    await publisher.send(inform(numbers[key], key=key))
                    numbers[key] += 1

            await publish(order[: len(order) // 2])
            async with bus:
                await publish(order[len(order) // 2 :])
                await self.until(lambda: ledger.count >= len(order), "all handled")
                await self.advance(1.0)  # let redeliveries and duplicates come, and be skipped
                ordering = aclbus_ordering.ordering(bus)
                for key in keys:
                    assert ledger.seen[key] == list(range(count)), key
                assert ledger.count == len(order)
                assert ledger.most_per_key == 1
                assert ledger.most_keys_at_once >= 2
                assert ordering.stats.gaps == 0
                assert ordering.stats.late == 0
                assert ordering.stats.handled == len(order)
                assert await bus.dead_letters.list() == []
                self.check_faults(bus, ordering)

    async def test_gap_is_signalled_and_later_messages_flow(self) -> None:
        """A message of key a never published: after gap_timeout a gap, then a goes on; key b
        is not held up meanwhile. The missing message, coming late, is dead-lettered."""
        dropper = Dropper(lambda m: m.routing_key == "a" and m.payload["n"] == 4)
        gaps: list[Gap] = []
        bus, ledger = self.consumer(DropperPlugin(dropper))
        async with bus:
            ordering = aclbus_ordering.ordering(bus)
            ordering.on_gap(gaps.append)
            for n in range(10):
                await bus.send(inform(n, key="a"))
                await bus.send(inform(n, key="b"))
            await self.until(lambda: len(ledger.seen["b"]) == 10, "key b handled")
            await self.until(lambda: len(ledger.seen["a"]) >= 4, "key a up to the gap")
            assert gaps == []
            assert ledger.seen["a"] == [0, 1, 2, 3]
            await self.until(lambda: len(ledger.seen["a"]) >= 9, "key a after the gap")
            assert ledger.seen["a"] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
            assert ledger.seen["b"] == list(range(10))
            [gap] = gaps
            assert (gap.kind, gap.key, gap.sender, gap.agent) == (
                "routing_key",
                "a",
                "bank",
                "ledger",
            )
            assert (gap.first, gap.last, gap.missing, gap.reason) == (5, 5, 1, "timeout")
            assert gap.waited >= FAST.gap_timeout
            assert ledger.gaps == [gap]  # the first message after it saw it too
            assert list(ordering.gaps) == [gap]
            assert (ordering.stats.gaps, ordering.stats.missing) == (1, 1)

            await dropper.release()  # message 4 of key a arrives after all
            await self.until(lambda: ordering.stats.late >= 1, "the late message")

            async def dead() -> list[Any]:
                return await bus.dead_letters.list()

            for _ in range(self.steps):
                letters = await dead()
                if letters:
                    break
                await self.advance(self.step)
            [letter] = letters
            assert letter.reason == aclbus_ordering.LATE_REASON
            assert letter.error_type == "LateMessage"
            assert letter.message(bus).payload == {"n": 4}
            assert ledger.seen["a"] == [0, 1, 2, 3, 5, 6, 7, 8, 9]

    async def test_conversation_key(self) -> None:
        """key="conversation" orders by correlation_id; messages without one are not ordered."""
        bus, ledger = self.consumer(ordered="conversation")
        async with bus:
            for n in range(30):
                for conv in ("c1", "c2"):
                    await bus.send(inform(n, key=None, conversation=conv))
            await self.until(lambda: ledger.count >= 60, "all handled")
            assert ledger.seen["c1"] == list(range(30))
            assert ledger.seen["c2"] == list(range(30))
            assert aclbus_ordering.ordering(bus).stats.gaps == 0

    async def test_messages_for_unordered_handlers_fill_the_series(self) -> None:
        """Requests of key a go to a handler that is not ordered: ordered informs of key a after
        them do not wait for them, and no gap is declared."""
        bus, ledger = self.consumer()
        requests: list[int] = []

        @bus.agent("ledger").on(Performative.REQUEST)
        async def note(msg: ACLMessage) -> None:
            requests.append(msg.payload["n"])

        async with bus:
            for n in range(40):
                msg = inform(n)
                if n % 3 == 0:
                    msg = msg.model_copy(update={"performative": Performative.REQUEST})
                await bus.send(msg)
            await self.until(
                lambda: ledger.count >= 26 and len(set(requests)) >= 14,
                "all handled, ordered or not",
            )
            await self.advance(1.0)
            assert ledger.seen["a"] == [n for n in range(40) if n % 3]
            assert sorted(set(requests)) == list(range(0, 40, 3))  # at least once, any order
            assert aclbus_ordering.ordering(bus).stats.gaps == 0


class RestartScenarios(Scenarios):
    """Restarts, on a backend without injected faults (a lost ack makes a restarted consumer
    see a message again, which is what ``start_timeout`` trades against)."""

    async def test_restarted_publisher_starts_a_new_series(self) -> None:
        """A publisher that restarts numbers from 1 again under a new epoch: no gap, no skip."""
        bus, ledger = self.consumer()
        async with bus:
            epochs = []
            for start in (0, 5):
                async with self.make_bus(plugins=[OrderingPlugin(FAST)]) as publisher:
                    epochs.append(aclbus_ordering.ordering(publisher).epoch)
                    for n in range(start, start + 5):
                        await publisher.send(inform(n))
                await self.until(partial(ledger.handled, start + 5), "published so far")
            assert epochs[0] != epochs[1]
            assert ledger.seen["a"] == list(range(10))
            ordering = aclbus_ordering.ordering(bus)
            assert (ordering.stats.gaps, ordering.stats.duplicates, ordering.tracked) == (0, 0, 2)

    async def test_restarted_consumer_resumes_mid_series(self) -> None:
        """A consumer started while a series is at 4 waits start_timeout for lower numbers,
        then goes on from the lowest it has, in order, without a gap."""
        async with self.make_bus(plugins=[OrderingPlugin(FAST)]) as publisher:
            first, first_ledger = self.consumer()
            async with first:
                for n in range(3):
                    await publisher.send(inform(n))
                await self.until(lambda: first_ledger.count >= 3, "first consumer")
            for n in range(3, 8):
                await publisher.send(inform(n))
            second, ledger = self.consumer()
            async with second:
                await self.until(lambda: ledger.count >= 5, "second consumer")
                ordering = aclbus_ordering.ordering(second)
                assert ledger.seen["a"] == list(range(3, 8))
                assert (ordering.stats.resumed, ordering.stats.gaps) == (1, 0)


# -- the memory engine, with faults ----------------------------------------------------------


class FaultyMemory(MemoryConfig):
    """Reordering, duplicates, lost acks and redelivery storms, seeded."""

    seed: ClassVar[int] = 7

    async def pause(self) -> None:
        for _ in range(3):
            await asyncio.sleep(0)

    def make_faults(self) -> Faults | None:
        return Faults(
            reorder=0.3,
            duplicate=0.15,
            drop_ack=0.05,
            storm=0.03,
            reorder_hold=0.2,
            storm_redeliveries=2,
        )

    def make_settings(self, **overrides: Any) -> Settings:
        overrides.setdefault("ack_wait", 2.0)  # lost acks come back soon
        return super().make_settings(**overrides)

    def check_faults(self, bus: Bus, ordering: Ordering) -> None:
        assert isinstance(bus.backend, MemoryBackend)
        counts = bus.backend.fault_injector.counts
        for fault in ("reorder", "duplicate", "drop_ack", "storm"):
            assert counts[fault] > 0, f"no {fault} was injected: the test proves nothing"
        assert ordering.stats.waited + ordering.stats.held > 0  # messages came early...
        assert ordering.stats.duplicates > 0  # ... and again


class TestOnMemory(FaultyMemory, Scenarios):
    async def test_without_the_plugin_the_faults_break_order(self) -> None:
        """The control: the same traffic, faults and concurrency without ordering scramble
        the keys."""
        order = [key for key in ("a", "b", "c") for _ in range(100)]
        random.Random(3).shuffle(order)
        numbers: Counter[str] = Counter()
        bus = self.make_bus(handler_concurrency=self.concurrency, max_deliver=None)
        ledger = Ledger(self.pause)
        bus.agent("ledger").on(INFORM)(ledger.handle)
        async with self.make_bus() as publisher:
            for key in order:
                await publisher.send(inform(numbers[key], key=key))
                numbers[key] += 1
            async with bus:
                await self.until(lambda: ledger.count >= len(order), "all handled")
        assert any(ledger.seen[key] != list(range(100)) for key in ("a", "b", "c"))

    async def test_callable_key_groups_keys(self) -> None:
        """A callable key: messages of one group run one at a time, each routing key in
        order; groups run in parallel."""
        bus, ledger = self.consumer(ordered=lambda m: m.routing_key.split(":")[0])
        async with bus:
            for n in range(40):
                for key in ("t1:a", "t1:b", "t2:a"):
                    await bus.send(inform(n, key=key))
            await self.until(lambda: ledger.count >= 120, "all handled")
        for key in ("t1:a", "t1:b", "t2:a"):
            assert ledger.seen[key] == list(range(40)), key
        assert ledger.most_per_key == 1  # per group
        assert ledger.most_keys_at_once == 2


class TestMemoryDeliveries(MemoryConfig, RestartScenarios):
    """No faults: the delivery budget and the pass-through paths."""

    async def pause(self) -> None:
        await asyncio.sleep(0)

    async def test_held_messages_never_exhaust_max_deliver(self) -> None:
        """With max_deliver=4 and a gap_timeout of 10 s, a message held behind a missing one
        is handed back with delays spread over the wait: handled after the gap, not given up."""
        dropper = Dropper(lambda m: m.payload["n"] == 1)
        settings = OrderingSettings(hold_wait=0.05, hold_delay=0.1, gap_timeout=10.0)
        bus, ledger = self.consumer(DropperPlugin(dropper), settings=settings, max_deliver=4)
        async with bus:
            for n in range(3):
                await bus.send(inform(n))
            await self.until(lambda: ledger.count >= 2, "handled after the gap")
            ordering = aclbus_ordering.ordering(bus)
            assert ledger.seen["a"] == [0, 2]
            assert ordering.stats.gaps == 1
            assert ordering.stats.held >= 2
            assert max(ledger.attempts) <= 4
            assert await bus.dead_letters.list() == []

    async def test_a_message_on_its_last_delivery_waits_in_the_process(self) -> None:
        """max_deliver=1: a held message cannot go back to the broker. It waits in the process,
        kept from redelivery by in_progress across 3 ack_waits, and runs after the gap."""
        dropper = Dropper(lambda m: m.payload["n"] == 2)
        settings = OrderingSettings(hold_wait=0.05, hold_delay=0.1, gap_timeout=3.0)
        bus, ledger = self.consumer(
            DropperPlugin(dropper), settings=settings, max_deliver=1, ack_wait=1.0
        )
        async with bus:
            for n in range(6):
                await bus.send(inform(n))
            await self.until(lambda: ledger.count >= 5, "handled after the gap")
            ordering = aclbus_ordering.ordering(bus)
            assert ledger.seen["a"] == [0, 1, 3, 4, 5]
            assert ledger.attempts == [1, 1, 1, 1, 1]
            assert (ordering.stats.gaps, ordering.stats.held, ordering.stats.forced) == (1, 0, 0)
            assert ordering.stats.waited > 0
            assert await bus.dead_letters.list() == []

    async def test_a_failing_handler_holds_its_key_until_given_up(self) -> None:
        """Message 1 raises: it is dead-lettered (no retry plugin), and key a goes on with 2,
        without declaring a gap; key a never ran two at a time."""
        bus, ledger = self.consumer()
        ledger.fail.add(1)
        async with bus:
            for n in range(5):
                await bus.send(inform(n))
            await self.until(lambda: ledger.count >= 4, "handled around the failure")
            assert ledger.seen["a"] == [0, 2, 3, 4]
            assert ledger.most_per_key == 1
            [letter] = await bus.dead_letters.list()
            assert letter.reason == "handler-error"
            assert aclbus_ordering.ordering(bus).stats.gaps == 0

    async def test_unordered_traffic_passes_straight_through(self) -> None:
        """No ordered handler: messages are numbered on the way out, nothing is tracked on the
        way in; requests (at most once) are not numbered; copied stamps are not re-sent."""
        bus = self.make_bus(plugins=[OrderingPlugin(FAST)])
        informs: list[ACLMessage] = []
        requests: list[ACLMessage] = []
        forwarded: list[ACLMessage] = []
        agent = bus.agent("plain")

        @agent.on(INFORM)
        async def keep(msg: ACLMessage) -> None:
            informs.append(msg)
            if msg.payload["n"] == 0:  # forward a copy without its routing key
                copy = {
                    "message_id": f"{msg.message_id}-fwd",  # the same id would be a duplicate
                    "receiver_id": "other",
                    "sender_id": "plain",
                    "routing_key": None,
                }
                await bus.send(msg.model_copy(update=copy))

        @agent.on(Performative.REQUEST)
        async def answer(msg: ACLMessage) -> ACLMessage:
            requests.append(msg)
            return msg.reply(INFORM)

        @bus.agent("other").on(INFORM)
        async def receive(msg: ACLMessage) -> None:
            forwarded.append(msg)

        async with bus:
            for n in range(3):
                await bus.send(inform(n).model_copy(update={"receiver_id": "plain"}))
            await bus.request(
                ACLMessage(performative="request", sender_id="cli", receiver_id="plain")
            )
            await self.until(lambda: len(informs) + len(forwarded) >= 4, "all handled")
            ordering = aclbus_ordering.ordering(bus)
            assert ordering.tracked == 0
            assert ordering.stats.stamped == 3  # the informs; the copy and the request: no
            stamps = [m.headers["aclbus-order-rk"] for m in informs]
            assert sorted(s.rsplit(".", 1)[1] for s in stamps) == ["1", "2", "3"]
            assert len({s.rsplit(".", 1)[0] for s in stamps}) == 1  # one series
            [request] = requests
            [copy] = forwarded
            for msg in (request, copy):
                assert not any(name.startswith("aclbus-order-") for name in msg.headers)

    async def test_loaded_twice_is_refused(self) -> None:
        bus = self.make_bus(plugins=[aclbus_ordering, OrderingPlugin(FAST)])
        with pytest.raises(ConfigurationError, match="loaded 2 times"):
            await bus.start()
        assert not bus.started

    async def test_ordering_of_a_bus_without_the_plugin(self) -> None:
        async with self.make_bus() as bus:
            with pytest.raises(ConfigurationError, match="not active on this bus"):
                aclbus_ordering.ordering(bus)


# -- capability negotiation ------------------------------------------------------------------


class UnorderedMemory(MemoryBackend):
    """A backend that does not keep publish order."""

    name: ClassVar[str] = "memory-unordered"
    capabilities: ClassVar[Capabilities] = dataclasses.replace(
        MemoryBackend.capabilities, ordered=False
    )


def test_a_backend_without_order_is_refused_when_the_bus_is_made() -> None:
    settings = Settings(backend="memory")
    with pytest.raises(CapabilityError) as info:
        Bus(settings, plugins=[aclbus_ordering], backend=UnorderedMemory(), entry_points=False)
    assert info.value.missing == ["ordered"]
    assert info.value.backend == "memory-unordered"
    assert "plugin 'aclbus_ordering' needs ordered" in str(info.value)
    assert "'memory-unordered'" in str(info.value)


def test_the_installed_entry_point_is_refused_too() -> None:
    settings = Settings(backend="memory", plugins=["ordering"])
    with pytest.raises(CapabilityError, match="plugin 'ordering' needs ordered"):
        Bus(settings, backend=UnorderedMemory())
    Bus(settings, backend=MemoryBackend())  # the full memory engine is fine


# -- a real nats-server ----------------------------------------------------------------------


class TestOnNats(NatsConfig, RestartScenarios):
    pass
