"""The retry middleware on a bus: on the memory engine (instant) and on a real nats-server.

`RetryCases` runs on both backends: on memory under a `ManualClock`, where time passes only in
``advance`` and every redelivery happens at its exact due time; on NATS in real time, with
short delays (0.3 to 1 s) and bounds on how late a redelivery may be. The tests that only
exercise the plugin's own logic (overrides, jitter, settled deliveries) run on memory alone.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

import aclbus_retry
from aclbus import ACLMessage, Bus, Delivery, Performative
from aclbus.dlq import DeadLetter, Reason
from aclbus.testing import Collector, MemoryConfig, eventually
from aclbus_nats.testing import NatsConfig as BaseNatsConfig
from aclbus_retry import NotRetryable, RetryPlugin, RetryPolicy, RetrySettings

pytestmark = pytest.mark.asyncio

Attempt = tuple[int, float]
"""(delivery.attempt, time on the backend's clock) of one handler call."""


class Flaky(Exception):
    """The transient error of these tests."""


# -- backend configs ------------------------------------------------------------------------


class MemoryTimed(MemoryConfig):
    """The memory engine: timing is exact, so the tolerances are (nearly) zero."""

    margin: ClassVar[float] = 0.01
    """How close to a due time a test looks for an early redelivery."""
    late: ClassVar[float] = 1e-6
    """How late a redelivery may be."""

    def now(self) -> float:
        return self.clock.now()


class NatsConfig(BaseNatsConfig):
    """The adapter's conformance config, with real-time lateness bounds."""

    margin: ClassVar[float] = 0.1
    late: ClassVar[float] = 0.4

    def now(self) -> float:
        return asyncio.get_running_loop().time()


# -- helpers --------------------------------------------------------------------------------


def request(**fields: Any) -> ACLMessage:
    values: dict[str, Any] = {
        "performative": Performative.REQUEST,
        "sender_id": "client",
        "receiver_id": "worker",
    }
    values.update(fields)
    return ACLMessage(**values)


class RetryBase:
    """What every retry test uses: a bus with the plugin, and time on the backend's clock."""

    margin: ClassVar[float]
    late: ClassVar[float]
    now: Callable[[], float]
    advance: Callable[[float], Any]
    make_bus: Callable[..., Bus]

    def retry_bus(
        self, *, rng: random.Random | None = None, bus: dict[str, Any] | None = None, **retry: Any
    ) -> Bus:
        """A bus with the retry plugin configured by ``retry`` (and bus settings ``bus``)."""
        retry.setdefault("jitter", 0.0)
        plugin = RetryPlugin(RetrySettings(**retry), rng=rng)
        return self.make_bus(plugins=[plugin], **(bus or {}))

    async def advance_to(self, when: float) -> None:
        """Let time pass on the backend's clock until ``when``."""
        await self.advance(max(0.0, when - self.now()))

    async def run_until(
        self, calls: Collector[Any], count: int, *, step: float = 0.1, budget: float = 10.0
    ) -> None:
        """Let time pass in steps until ``count`` calls were made (within ``budget`` s)."""
        spent = 0.0
        while len(calls) < count:
            assert spent < budget, f"{count} calls expected, got {len(calls)}: {calls.items}"
            await self.advance(step)
            spent += step

    async def dead_letters(self, bus: Bus, count: int = 1) -> list[DeadLetter]:
        """The DLQ once it holds ``count`` letters."""
        found: list[DeadLetter] = []

        async def enough() -> bool:
            found[:] = await bus.dead_letters.list()
            return len(found) >= count

        await eventually(enough, what=f"{count} dead letter(s)")
        return found


class RetryCases(RetryBase):
    """Retry behaviour every backend with delayed nacks must show."""

    async def test_retried_after_the_exact_backoff_delays(self) -> None:
        """Fails twice, then succeeds: redelivered at +0.5 s then +1 s, never before."""
        bus = self.retry_bus(initial_interval=0.5, multiplier=2.0, max_attempts=5)
        calls: Collector[Attempt] = Collector()
        worker = bus.agent("worker")

        @worker.on(Performative.REQUEST)
        async def flaky(msg: ACLMessage, delivery: Delivery) -> None:
            calls.add((delivery.attempt, self.now()))
            if delivery.attempt < 3:
                raise Flaky(f"try {delivery.attempt}")

        async with bus:
            await bus.send(request())
            await calls.wait_for(1)
            for expected, delay in ((1, 0.5), (2, 1.0)):
                due = calls.items[-1][1] + delay
                await self.advance_to(due - self.margin)
                assert len(calls) == expected, f"redelivered before the {delay} s backoff"
                await self.advance_to(due + self.margin)
                await calls.wait_for(expected + 1)
            await self.advance(1.5)
            assert [a for a, _ in calls.items] == [1, 2, 3]
            (_, t1), (_, t2), (_, t3) = calls.items
            assert 0.5 <= t2 - t1 <= 0.5 + self.late
            assert 1.0 <= t3 - t2 <= 1.0 + self.late
            assert await bus.dead_letters.list() == []
            assert bus.stats.failed == 2, "each failed attempt is counted by the bus"
            assert bus.stats.handled == 1

    async def test_a_failed_batch_is_retried_message_by_message(self) -> None:
        """A batch handler that fails once: each message is redelivered after the backoff."""
        bus = self.retry_bus(initial_interval=0.3, multiplier=1.0, max_attempts=3)
        calls: Collector[list[tuple[int, int]]] = Collector()
        worker = bus.agent("worker")

        @worker.on_batch(Performative.REQUEST, max_messages=3, max_wait=0.1)
        async def store(msgs: list[ACLMessage], deliveries: list[Delivery]) -> None:
            calls.add([(m.payload, d.attempt) for m, d in zip(msgs, deliveries, strict=True)])
            if any(d.attempt == 1 for d in deliveries):
                raise Flaky("the store is busy")

        async with bus:
            for n in range(3):
                await bus.send(request(payload=n))
            await calls.wait_for(1)

            async def again() -> bool:
                return sum(len(c) for c in calls.items[1:]) >= 3

            spent = 0.0
            while not await again():
                assert spent < 10, f"no retry of the batch: {calls.items}"
                await self.advance(0.1)
                spent += 0.1
            first = sorted(calls.items[0])
            retried = sorted(x for c in calls.items[1:] for x in c)
            assert first == [(0, 1), (1, 1), (2, 1)]
            assert retried == [(0, 2), (1, 2), (2, 2)]
            assert await bus.dead_letters.list() == []
            assert bus.stats.failed == 3
            assert bus.stats.handled == 3

    async def test_exhausted_attempts_land_in_the_dead_letter_queue(self) -> None:
        """Always failing: tried max_attempts times, then dead-lettered with the last error."""
        bus = self.retry_bus(initial_interval=0.3, multiplier=1.0, max_attempts=3)
        calls: Collector[Attempt] = Collector()
        worker = bus.agent("worker")

        @worker.on(Performative.REQUEST)
        async def broken(msg: ACLMessage, delivery: Delivery) -> None:
            calls.add((delivery.attempt, self.now()))
            raise Flaky(f"still down on attempt {delivery.attempt}, password=hunter2")

        async with bus:
            sent = request(payload={"job": 7})
            await bus.send(sent)
            await self.run_until(calls, 3)
            [letter] = await self.dead_letters(bus)
            assert letter.reason == Reason.EXHAUSTED
            assert letter.attempts == 3
            assert letter.error_type == "Flaky"
            assert letter.error is not None
            assert "still down on attempt 3" in letter.error
            assert "hunter2" not in letter.error
            assert letter.handler is not None
            assert letter.handler.endswith("broken")
            assert letter.origin == "worker"
            assert letter.message(bus).message_id == sent.message_id
            await self.advance(1.0)
            assert [a for a, _ in calls.items] == [1, 2, 3], "delivered again after giving up"

    async def test_not_retryable_error_is_dead_lettered_at_once(self) -> None:
        """An error in give_up_on is not retried: one attempt, reason not-retryable."""
        bus = self.retry_bus(initial_interval=0.3, give_up_on=["ValueError"])
        calls: Collector[Attempt] = Collector()
        worker = bus.agent("worker")

        @worker.on(Performative.REQUEST)
        async def strict(msg: ACLMessage, delivery: Delivery) -> None:
            calls.add((delivery.attempt, self.now()))
            raise ValueError("amount must be positive")

        async with bus:
            await bus.send(request())
            [letter] = await self.dead_letters(bus)
            assert (letter.reason, letter.attempts) == (Reason.NOT_RETRYABLE, 1)
            assert (letter.error_type, letter.error) == ("ValueError", "amount must be positive")
            await self.advance(1.0)
            assert len(calls) == 1

    async def test_failed_request_gets_a_failure_reply_and_no_retry(self) -> None:
        """A request (at_most_once) is not retried: the requester gets `failure` at once."""
        bus = self.retry_bus(initial_interval=0.3, max_attempts=5)
        calls: Collector[Attempt] = Collector()
        worker = bus.agent("worker")

        @worker.on(Performative.QUERY_REF)
        async def answer(msg: ACLMessage, delivery: Delivery) -> ACLMessage:
            calls.add((delivery.attempt, self.now()))
            raise Flaky("backend unavailable")

        async with bus:
            reply = await bus.request(request(performative=Performative.QUERY_REF), timeout=5)
            assert reply.performative is Performative.FAILURE
            assert reply.payload["error"] == "Flaky"
            await self.advance(1.0)
            assert len(calls) == 1
            assert await bus.dead_letters.list() == []

    async def test_heartbeat_keeps_a_long_handler_from_redelivery(self) -> None:
        """A handler running 2.5 times ack_wait with heartbeats is delivered once and acked."""
        attempts, first = await self._long_handler(progress_interval="auto")
        assert attempts == [1], "redelivered despite the heartbeat"
        assert first.settled == "ack"

    async def test_without_heartbeat_a_long_handler_is_redelivered(self) -> None:
        """The control: the same handler without heartbeats is redelivered after ack_wait."""
        attempts, _ = await self._long_handler(progress_interval=None)
        assert attempts[:2] == [1, 2]

    async def _long_handler(self, progress_interval: str | None) -> tuple[list[int], Delivery]:
        """Run a handler that takes 2.5 s with ack_wait 1 s; return the attempts it saw."""
        bus = self.retry_bus(
            progress_interval=progress_interval,
            max_attempts=1,
            bus={"ack_wait": 1.0, "handler_concurrency": 2},
        )
        calls: Collector[Delivery] = Collector()
        release = asyncio.Event()
        worker = bus.agent("worker")

        @worker.on(Performative.REQUEST)
        async def slow(msg: ACLMessage, delivery: Delivery) -> None:
            calls.add(delivery)
            if delivery.attempt == 1:
                await release.wait()

        async with bus:
            await bus.send(request())
            [first] = await calls.wait_for(1)
            start = self.now()
            await self.advance_to(start + 2.5)
            release.set()
            await self.advance_to(start + 4.0)
            await eventually(lambda: first.settled is not None, what="the first delivery settled")
        return [d.attempt for d in calls.items], first


class TestRetryOnMemory(MemoryTimed, RetryCases):
    pass


class TestRetryOnNats(NatsConfig, RetryCases):
    pass


class TestPoliciesOnMemory(MemoryTimed, RetryBase):
    """Which policy applies, and what it does: the plugin's own logic, on memory alone."""

    async def _always_failing(
        self,
        bus: Bus,
        *,
        error: Callable[[], Exception] = lambda: Flaky("down"),
        decorate: Callable[[Any], Any] = lambda f: f,
        above: bool = False,
    ) -> tuple[list[Attempt], list[DeadLetter]]:
        """Run a handler that always raises until it is dead-lettered; return what happened."""
        calls: Collector[Attempt] = Collector()
        worker = bus.agent("worker")

        async def broken(msg: ACLMessage, delivery: Delivery) -> None:
            calls.add((delivery.attempt, self.now()))
            raise error()

        if above:  # @policy(...) above @agent.on(...)
            decorate(worker.on(Performative.REQUEST)(broken))
        else:  # @agent.on(...) above @policy(...)
            worker.on(Performative.REQUEST)(decorate(broken))
        async with bus:
            await bus.send(request())
            await self.advance(600.0)
            letters = await self.dead_letters(bus)
        return calls.items, letters

    async def test_agent_override_wins_over_the_default(self) -> None:
        bus = self.retry_bus(
            max_attempts=5, initial_interval=1.0, agents={"worker": {"max_attempts": 2}}
        )
        calls, [letter] = await self._always_failing(bus)
        assert [a for a, _ in calls] == [1, 2]
        assert (letter.reason, letter.attempts) == (Reason.EXHAUSTED, 2)

    @pytest.mark.parametrize("above", [False, True], ids=["below-on", "above-on"])
    async def test_handler_override_wins_over_agent_and_default(self, above: bool) -> None:
        """@policy fields win, field by field, whichever side of @agent.on it sits on."""
        bus = self.retry_bus(
            max_attempts=5,
            initial_interval=1.0,
            multiplier=2.0,
            agents={"worker": {"max_attempts": 4, "initial_interval": 3.0}},
        )
        calls, [letter] = await self._always_failing(
            bus, decorate=aclbus_retry.policy(max_attempts=3), above=above
        )
        assert [a for a, _ in calls] == [1, 2, 3]
        assert (letter.reason, letter.attempts) == (Reason.EXHAUSTED, 3)
        times = [t for _, t in calls]
        # max_attempts from the handler; initial_interval from the agent; multiplier default
        assert [b - a for a, b in itertools.pairwise(times)] == [3.0, 6.0]

    async def test_handler_predicate_decides_what_is_retried(self) -> None:
        bus = self.retry_bus(max_attempts=5, initial_interval=1.0)
        calls, [letter] = await self._always_failing(
            bus,
            error=lambda: Flaky("HTTP 404"),
            decorate=aclbus_retry.policy(retry_on=lambda exc: "503" in str(exc)),
        )
        assert len(calls) == 1
        assert letter.reason == Reason.NOT_RETRYABLE

    async def test_a_failing_predicate_retries_as_by_default(self) -> None:
        def buggy(exc: BaseException) -> bool:
            raise AttributeError("oops")

        bus = self.retry_bus(max_attempts=2)
        calls, [letter] = await self._always_failing(
            bus, decorate=aclbus_retry.policy(retry_on=buggy)
        )
        assert len(calls) == 2
        assert (letter.reason, letter.error_type) == (Reason.EXHAUSTED, "Flaky")

    async def test_not_retryable_exception_gives_up_whatever_the_policy(self) -> None:
        bus = self.retry_bus(max_attempts=5, retry_on=["BaseException"])
        calls, [letter] = await self._always_failing(
            bus, error=lambda: NotRetryable("order 7 does not exist")
        )
        assert len(calls) == 1
        assert (letter.reason, letter.error_type) == (Reason.NOT_RETRYABLE, "NotRetryable")

    @pytest.mark.parametrize(
        ("error", "attempts", "reason"),
        [
            (lambda: KeyError("sku"), 1, Reason.NOT_RETRYABLE),
            (lambda: ConnectionResetError("peer"), 2, Reason.EXHAUSTED),  # a ConnectionError
        ],
        ids=["other", "subclass"],
    )
    async def test_retry_on_types_limit_what_is_retried(
        self, error: Callable[[], Exception], attempts: int, reason: str
    ) -> None:
        bus = self.retry_bus(max_attempts=2, retry_on=["ConnectionError", "TimeoutError"])
        calls, [letter] = await self._always_failing(bus, error=error)
        assert len(calls) == attempts
        assert letter.reason == reason

    async def test_the_brokers_max_deliver_caps_max_attempts(self) -> None:
        """max_attempts 5 but max_deliver 2: given up by the plugin (with the error) at 2."""
        bus = self.retry_bus(max_attempts=5, bus={"max_deliver": 2})
        calls, [letter] = await self._always_failing(bus)
        assert len(calls) == 2
        assert (letter.reason, letter.attempts, letter.error_type) == (
            Reason.EXHAUSTED,
            2,
            "Flaky",
        )

    async def test_jittered_delays_stay_within_bounds_and_follow_the_seed(self) -> None:
        retry: dict[str, Any] = {
            "max_attempts": 6,
            "initial_interval": 1.0,
            "multiplier": 2.0,
            "jitter": 0.5,
        }
        bus = self.retry_bus(rng=random.Random(7), **retry)
        calls, _ = await self._always_failing(bus)
        times = [t for _, t in calls]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        policy = RetryPolicy(**retry)
        assert len(gaps) == 5
        for attempt, gap in enumerate(gaps, start=1):
            low, high = policy.bounds(attempt)
            assert low <= gap <= high, f"attempt {attempt}: {gap} not in [{low}, {high}]"
        seeded = random.Random(7)
        assert gaps == pytest.approx([policy.delay(n, seeded) for n in range(1, 6)])
        assert gaps != pytest.approx([policy.base_delay(n) for n in range(1, 6)]), "no jitter"

    async def test_a_delivery_the_handler_settled_is_left_alone(self) -> None:
        """The handler nacked with its own delay, then raised: its nack stands."""
        bus = self.retry_bus(max_attempts=2, initial_interval=1.0)
        calls: Collector[Attempt] = Collector()
        worker = bus.agent("worker")

        @worker.on(Performative.REQUEST)
        async def careful(msg: ACLMessage, delivery: Delivery) -> None:
            calls.add((delivery.attempt, self.now()))
            if delivery.attempt < 4:
                await delivery.nack(delay=10.0)
                raise Flaky("settled first")

        async with bus:
            await bus.send(request())
            await self.advance(100.0)
            assert [a for a, _ in calls.items] == [1, 2, 3, 4]
            times = [t for _, t in calls.items]
            assert [b - a for a, b in itertools.pairwise(times)] == [10.0] * 3
            assert await bus.dead_letters.list() == []

    async def test_success_is_acked_and_costs_no_heartbeat(self) -> None:
        bus = self.retry_bus()
        seen: Collector[Delivery] = Collector()
        worker = bus.agent("worker")

        @worker.on(Performative.REQUEST)
        async def fine(msg: ACLMessage, delivery: Delivery) -> None:
            seen.add(delivery)
            await asyncio.sleep(0)
            seen.add(delivery)

        async with bus:
            timers = self.clock.pending
            await bus.send(request())
            [delivery, _] = await seen.wait_for(2)
            await eventually(lambda: delivery.settled == "ack")
            await self.advance(60.0)
            assert len(seen) == 2
            assert self.clock.pending <= timers, "a timer is left behind"

    async def test_the_entry_point_reads_its_settings_from_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("ACLBUS_RETRY__MAX_ATTEMPTS", "2")
        monkeypatch.setenv("ACLBUS_RETRY__JITTER", "0")
        monkeypatch.setenv("ACLBUS_RETRY__INITIAL_INTERVAL", "4")
        bus = Bus(self.make_settings(plugins=["retry"]), backend=self.make_backend())
        assert "retry" in [p.name for p in bus.plugins.info()]
        calls, [letter] = await self._always_failing(bus)
        assert [t for _, t in calls] == [0.0, 4.0]
        assert (letter.reason, letter.attempts) == (Reason.EXHAUSTED, 2)
