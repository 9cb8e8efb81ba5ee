"""Fault injection: each fault kind, deterministic for a seed, off by default."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace

import pytest

from aclbus.backend import DeliveryMode, Received, StreamSpec, SubscriptionSpec
from aclbus.backends.memory import Faults, ManualClock, MemoryBackend, MemorySubscription
from aclbus.errors import ConfigurationError
from aclbus.testing.collector import Deliveries

AMO = DeliveryMode.AT_MOST_ONCE
Make = Callable[..., Awaitable[MemoryBackend]]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def make(clock: ManualClock) -> AsyncIterator[Make]:
    """Make connected backends on ``clock`` with stream S (``s.>``); close them afterwards."""
    made: list[MemoryBackend] = []

    async def factory(faults: Faults | None = None, seed: int = 0) -> MemoryBackend:
        backend = MemoryBackend(clock=clock, faults=faults, seed=seed)
        made.append(backend)
        await backend.connect()
        await backend.provision(StreamSpec("S", ("s.>",)))
        return backend

    yield factory
    for backend in made:
        await backend.close()


def _seen(got: Deliveries) -> list[tuple[bytes, int]]:
    return [(r.body, r.attempt) for r in got.items]


async def test_faults_are_off_by_default(make: Make, clock: ManualClock) -> None:
    backend = await make()
    assert not backend.fault_injector.active
    got = Deliveries()
    await backend.subscribe(SubscriptionSpec("s.a"), got)
    for i in range(20):
        await backend.publish("s.a", {}, str(i).encode())
    await clock.advance(60)
    assert got.bodies == [str(i).encode() for i in range(20)]
    assert not backend.fault_injector.counts


async def test_duplicate_delivers_the_same_delivery_twice(make: Make, clock: ManualClock) -> None:
    backend = await make(Faults(duplicate=1.0))
    got = Deliveries(settle=None)
    sub = await backend.subscribe(SubscriptionSpec("s.a", ack_wait=30), got)
    await backend.publish("s.a", {}, b"x")
    await clock.settle()
    assert [(r.body, r.attempt, r.sequence) for r in got.items] == [(b"x", 1, 1), (b"x", 1, 1)]
    # Acking either copy settles the message: nothing comes back after ack_wait.
    await got.items[1].ack()
    assert isinstance(sub, MemorySubscription)
    assert sub.consumer is not None
    assert backend.consumer_info("S", sub.consumer).num_ack_pending == 0
    await clock.advance(60)
    assert len(got) == 2
    assert backend.fault_injector.counts["duplicate"] == 1


async def test_duplicate_at_most_once(make: Make, clock: ManualClock) -> None:
    backend = await make(Faults(duplicate=1.0))
    got = Deliveries()
    await backend.subscribe(SubscriptionSpec("c.a", mode=AMO), got)
    await backend.publish("c.a", {}, b"x", mode=AMO)
    await clock.settle()
    assert got.bodies == [b"x", b"x"]


async def test_reorder_swaps_each_held_delivery_with_the_next(
    make: Make, clock: ManualClock
) -> None:
    backend = await make(Faults(reorder=1.0))
    for i in range(4):
        await backend.publish("s.a", {}, str(i).encode())
    got = Deliveries()
    await backend.subscribe(SubscriptionSpec("s.a"), got)
    await clock.settle()
    assert got.bodies == [b"1", b"0", b"3", b"2"]
    assert [r.sequence for r in got.items] == [2, 1, 4, 3]
    assert backend.fault_injector.counts["reorder"] == 2


async def test_reorder_at_most_once(make: Make, clock: ManualClock) -> None:
    backend = await make(Faults(reorder=1.0))
    got = Deliveries()
    await backend.subscribe(SubscriptionSpec("c.a", mode=AMO), got)
    for i in range(4):
        await backend.publish("c.a", {}, str(i).encode(), mode=AMO)
    await clock.settle()
    assert got.bodies == [b"1", b"0", b"3", b"2"]


async def test_held_delivery_goes_after_reorder_hold_without_a_next_one(
    make: Make, clock: ManualClock
) -> None:
    backend = await make(Faults(reorder=1.0, reorder_hold=2.0))
    got = Deliveries()
    await backend.subscribe(SubscriptionSpec("s.a"), got)
    await backend.publish("s.a", {}, b"lonely")
    await clock.advance(1.9)
    assert len(got) == 0
    await clock.advance(0.1)
    assert got.bodies == [b"lonely"]


async def test_drop_ack_loses_the_ack_so_the_message_comes_back(
    make: Make, clock: ManualClock
) -> None:
    backend = await make(Faults(drop_ack=1.0))
    got = Deliveries(settle="ack")
    await backend.subscribe(SubscriptionSpec("s.a", ack_wait=5), got)
    await backend.publish("s.a", {}, b"x")
    await clock.settle()
    [first] = got.items
    assert first.settled == "ack"  # the handler believes it acked
    backend.fault_injector.faults = Faults()  # only the first ack is lost
    await clock.advance(4.9)
    assert len(got) == 1
    await clock.advance(0.1)
    assert _seen(got) == [(b"x", 1), (b"x", 2)]
    await clock.advance(30)
    assert len(got) == 2
    assert backend.fault_injector.counts["drop_ack"] == 1


async def test_delay_makes_a_delivery_arrive_late(make: Make, clock: ManualClock) -> None:
    backend = await make(Faults(delay=1.0, delay_seconds=2.0))
    stored, core = Deliveries(), Deliveries()
    await backend.subscribe(SubscriptionSpec("s.a"), stored)
    await backend.subscribe(SubscriptionSpec("c.a", mode=AMO), core)
    await backend.publish("s.a", {}, b"stored")
    await backend.publish("c.a", {}, b"core", mode=AMO)
    await clock.advance(1.9)
    assert len(stored) == len(core) == 0
    await clock.advance(0.1)
    assert (stored.bodies, core.bodies) == ([b"stored"], [b"core"])
    assert stored.items[0].attempt == 1


async def test_delay_longer_than_ack_wait_also_brings_a_redelivery(
    make: Make, clock: ManualClock
) -> None:
    # The ack timer runs from when the broker sent the delivery, as over a slow network.
    backend = await make(Faults(delay=1.0, delay_seconds=3.0))
    arrivals: list[tuple[int, float]] = []

    async def handler(received: Received) -> None:
        arrivals.append((received.attempt, clock.now()))
        await received.ack()

    await backend.subscribe(SubscriptionSpec("s.a", ack_wait=2.0), handler)
    await backend.publish("s.a", {}, b"x")
    await clock.advance(10)
    assert arrivals == [(1, 3.0), (2, 5.0)]


async def test_storm_redelivers_unacked_messages_extra_times(
    make: Make, clock: ManualClock
) -> None:
    backend = await make(Faults(storm=1.0, storm_redeliveries=2))
    got = Deliveries(settle=None)
    sub = await backend.subscribe(SubscriptionSpec("s.a", ack_wait=30), got)
    await backend.publish("s.a", {}, b"x")
    await clock.settle()
    assert _seen(got) == [(b"x", 1), (b"x", 2), (b"x", 3)]
    assert isinstance(sub, MemorySubscription)
    assert sub.consumer is not None
    info = backend.consumer_info("S", sub.consumer)
    assert (info.delivered, info.redelivered, info.num_ack_pending) == (3, 2, 1)


async def test_storm_respects_max_deliver(make: Make, clock: ManualClock) -> None:
    backend = await make(Faults(storm=1.0, storm_redeliveries=5))
    got = Deliveries(settle=None)
    await backend.subscribe(SubscriptionSpec("s.a", ack_wait=1, max_deliver=2), got)
    await backend.publish("s.a", {}, b"x")
    await clock.advance(10)
    assert got.attempts == [1, 2]


async def test_faults_apply_only_to_their_subjects(make: Make, clock: ManualClock) -> None:
    backend = await make(Faults(duplicate=1.0, subjects=("s.dup.>",)))
    got = Deliveries()
    await backend.subscribe(SubscriptionSpec("s.>"), got)
    await backend.publish("s.dup.x", {}, b"dup")
    await backend.publish("s.plain", {}, b"plain")
    await clock.settle()
    assert sorted(got.bodies) == [b"dup", b"dup", b"plain"]


async def _run(make: Make, clock: ManualClock, seed: int) -> tuple[list[bytes], dict[str, int]]:
    backend = await make(Faults(duplicate=0.3, reorder=0.3), seed=seed)
    got = Deliveries()
    await backend.subscribe(SubscriptionSpec("s.r", deliver="new"), got)
    for i in range(30):
        await backend.publish("s.r", {}, str(i).encode())
    await clock.advance(5)
    return got.bodies, dict(backend.fault_injector.counts)


async def test_same_seed_same_faults_other_seed_other_faults(
    make: Make, clock: ManualClock
) -> None:
    first = await _run(make, clock, seed=3)
    again = await _run(make, clock, seed=3)
    other = await _run(make, clock, seed=4)
    assert first == again
    assert first[1]["duplicate"] > 0
    assert first[1]["reorder"] > 0
    assert first[0] != other[0]
    # Whatever the faults, every message arrives.
    assert {int(b) for b in first[0]} == set(range(30))


async def test_reseed_starts_the_draws_over(make: Make, clock: ManualClock) -> None:
    backend = await make(Faults(duplicate=0.5), seed=11)
    injector = backend.fault_injector
    draws = [injector.duplicate() for _ in range(20)]
    injector.reseed(11)
    assert [injector.duplicate() for _ in range(20)] == draws
    assert injector.counts["duplicate"] == sum(draws)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"duplicate": 1.5}, "duplicate=1.5"),
        ({"drop_ack": -0.1}, "drop_ack=-0.1"),
        ({"delay_seconds": -1.0}, "delay_seconds=-1.0"),
        ({"storm_redeliveries": 0}, "storm_redeliveries=0"),
        ({"subjects": ()}, "subjects=()"),
    ],
)
def test_bad_fault_settings_are_refused(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named.replace("(", r"\(").replace(")", r"\)")):
        Faults(**kwargs)  # type: ignore[arg-type]


def test_faults_from_a_settings_object() -> None:
    faults = Faults.from_object(SimpleNamespace(delay=0.25, subjects=["a.>"], unrelated=1))
    assert faults == Faults(delay=0.25, subjects=("a.>",))
    assert faults.enabled
    assert not Faults().enabled
