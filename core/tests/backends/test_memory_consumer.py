"""Consumers: flow control, counters, durables, queue groups, advisories and hand-over."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest

from aclbus.backend import DeliveryMode, Received, StreamSpec, Subscription, SubscriptionSpec
from aclbus.backends.memory import ManualClock, MemoryBackend, MemoryServer, MemorySubscription
from aclbus.errors import ConfigurationError
from aclbus.testing.collector import Deliveries

AMO = DeliveryMode.AT_MOST_ONCE


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def backend(clock: ManualClock) -> AsyncIterator[MemoryBackend]:
    async with MemoryBackend(clock=clock) as backend:
        await backend.provision(StreamSpec("S", ("s.>",)))
        yield backend


def _consumer(sub: Subscription) -> str:
    assert isinstance(sub, MemorySubscription)
    assert sub.consumer is not None
    return sub.consumer


async def _publish(backend: MemoryBackend, subject: str, count: int) -> None:
    for i in range(count):
        await backend.publish(subject, {}, str(i).encode())


async def test_max_ack_pending_limits_deliveries_in_flight(
    backend: MemoryBackend, clock: ManualClock
) -> None:
    got = Deliveries(settle=None)
    sub = await backend.subscribe(SubscriptionSpec("s.a", max_ack_pending=2), got)
    await _publish(backend, "s.a", 5)
    await clock.settle()
    assert got.bodies == [b"0", b"1"]
    info = backend.consumer_info("S", _consumer(sub))
    assert (info.num_pending, info.num_ack_pending, info.num_waiting) == (3, 2, 1)
    await got.items[0].ack()
    await clock.settle()
    assert got.bodies == [b"0", b"1", b"2"]
    await got.items[1].term()
    await got.items[2].ack()
    await clock.settle()
    assert got.bodies == [b"0", b"1", b"2", b"3", b"4"]


async def test_consumer_info_counts(backend: MemoryBackend, clock: ManualClock) -> None:
    got = Deliveries(settle=None)
    sub = await backend.subscribe(SubscriptionSpec("s.a", ack_wait=10), got)
    await _publish(backend, "s.a", 4)
    await clock.settle()
    first, second, third, _ = got.items
    await first.ack()
    await second.nack()
    await third.term("bad input")
    await clock.settle()
    info = backend.consumer_info("S", _consumer(sub))
    assert info.filter_subject == "s.a"
    assert not info.durable
    assert (info.delivered, info.redelivered) == (5, 1)
    assert (info.acked, info.nacked, info.terminated, info.exhausted) == (1, 1, 1, 0)
    assert (info.num_ack_pending, info.num_redelivered, info.num_pending) == (2, 1, 0)
    assert info.ack_floor == 1
    assert info.subscriptions == 1


async def test_out_of_order_acks_leave_only_the_unacked_to_redeliver(
    backend: MemoryBackend, clock: ManualClock
) -> None:
    got: list[Received] = []

    async def record(received: Received) -> None:
        got.append(received)

    spec = SubscriptionSpec("s.a", ack_wait=5, max_ack_pending=10_000)
    sub = await backend.subscribe(spec, record)
    await _publish(backend, "s.a", 2000)
    await clock.settle()
    assert len(got) == 2000
    keep = {7, 1000, 1999}
    for received in reversed(got):
        if int(received.body) not in keep:
            await received.ack()
    await clock.advance(5)
    redelivered = sorted(int(r.body) for r in got[2000:])
    assert redelivered == sorted(keep)
    assert all(r.attempt == 2 for r in got[2000:])
    assert backend.consumer_info("S", _consumer(sub)).num_ack_pending == 3


async def test_durable_keeps_its_position_without_subscription(
    backend: MemoryBackend, clock: ManualClock
) -> None:
    spec = SubscriptionSpec("s.a", durable="svc")
    first = Deliveries()
    sub = await backend.subscribe(spec, first)
    await _publish(backend, "s.a", 2)
    await clock.settle()
    await sub.unsubscribe()
    await backend.publish("s.a", {}, b"while-away")
    info = backend.consumer_info("S", "svc")
    assert (info.durable, info.subscriptions, info.num_pending, info.acked) == (True, 0, 1, 2)
    # deliver="new" does not move an existing durable.
    again = Deliveries()
    await backend.subscribe(SubscriptionSpec("s.a", durable="svc", deliver="new"), again)
    await clock.settle()
    assert again.bodies == [b"while-away"]


async def test_durable_name_is_bound_to_its_subject(backend: MemoryBackend) -> None:
    await backend.subscribe(SubscriptionSpec("s.a", durable="svc"), Deliveries())
    with pytest.raises(ConfigurationError, match=r"'svc'.*'s\.a'.*'s\.b'"):
        await backend.subscribe(SubscriptionSpec("s.b", durable="svc"), Deliveries())


async def test_consumers_without_durable_end_with_their_subscriptions(
    backend: MemoryBackend, clock: ManualClock
) -> None:
    own = await backend.subscribe(SubscriptionSpec("s.a"), Deliveries())
    spec = SubscriptionSpec("s.q", queue="pool")
    members = [await backend.subscribe(spec, Deliveries()) for _ in range(2)]
    assert _consumer(members[0]) == _consumer(members[1]) == "pool"
    assert set(backend.stream_info("S").consumers) == {_consumer(own), "pool"}
    await own.unsubscribe()
    await members[0].unsubscribe()
    assert backend.stream_info("S").consumers == ("pool",)
    await members[1].unsubscribe()
    assert backend.stream_info("S").consumers == ()


async def test_queue_group_splits_work_even_with_handlers_that_never_yield(
    backend: MemoryBackend, clock: ManualClock
) -> None:
    handled: dict[str, list[bytes]] = {"a": [], "b": []}

    def member(name: str) -> Deliveries:
        class Member(Deliveries):
            async def __call__(self, received: Received) -> None:
                handled[name].append(received.body)
                await received.ack()

        return Member()

    spec = SubscriptionSpec("s.w", durable="workers", queue="workers")
    await backend.subscribe(spec, member("a"))
    await backend.subscribe(spec, member("b"))
    await _publish(backend, "s.w", 10)
    await clock.settle()
    assert sorted(handled["a"] + handled["b"]) == sorted(str(i).encode() for i in range(10))
    assert len(handled["a"]) == len(handled["b"]) == 5


async def test_wildcard_consumer_follows_matching_subjects(
    backend: MemoryBackend, clock: ManualClock
) -> None:
    got = Deliveries()
    await backend.subscribe(SubscriptionSpec("s.*.created"), got)
    for subject in ("s.a.created", "s.a.deleted", "s.b.created", "s.b.c.created"):
        await backend.publish(subject, {}, subject.encode())
    await clock.settle()
    assert got.bodies == [b"s.a.created", b"s.b.created"]


async def test_max_deliver_publishes_an_advisory(
    backend: MemoryBackend, clock: ManualClock
) -> None:
    advisories = Deliveries()
    await backend.subscribe(
        SubscriptionSpec("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>", mode=AMO), advisories
    )
    got = Deliveries(settle="nack")
    await backend.subscribe(SubscriptionSpec("s.a", durable="svc", max_deliver=3), got)
    await backend.publish("s.a", {}, b"poison")
    await clock.settle()
    assert got.attempts == [1, 2, 3]
    [advisory] = advisories.items
    assert advisory.subject == "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.S.svc"
    body = json.loads(advisory.body)
    assert body["type"] == "io.nats.jetstream.advisory.v1.max_deliver"
    assert (body["stream"], body["consumer"], body["stream_seq"], body["deliveries"]) == (
        "S",
        "svc",
        1,
        3,
    )
    assert backend.consumer_info("S", "svc").exhausted == 1


async def test_term_publishes_an_advisory_with_the_reason(
    backend: MemoryBackend, clock: ManualClock
) -> None:
    advisories = Deliveries()
    await backend.subscribe(
        SubscriptionSpec("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.S.*", mode=AMO), advisories
    )

    async def refuse(received: Received) -> None:
        await received.term("cannot parse")

    await backend.subscribe(SubscriptionSpec("s.a", durable="svc"), refuse)
    await backend.publish("s.a", {}, b"junk")
    await clock.settle()
    [advisory] = advisories.items
    body = json.loads(advisory.body)
    assert (body["type"], body["reason"], body["stream_seq"]) == (
        "io.nats.jetstream.advisory.v1.terminated",
        "cannot parse",
        1,
    )


async def test_handler_error_is_logged_and_the_message_redelivered(
    backend: MemoryBackend, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[int] = []

    async def flaky(received: Received) -> None:
        attempts.append(received.attempt)
        if received.attempt == 1:
            raise RuntimeError("first time unlucky")
        await received.ack()

    await backend.subscribe(SubscriptionSpec("s.a", ack_wait=3), flaky)
    with caplog.at_level(logging.ERROR, logger="aclbus.backends.memory"):
        await backend.publish("s.a", {}, b"x")
        await clock.settle()
    assert "first time unlucky" in caplog.text
    assert "'s.a'" in caplog.text
    await clock.advance(3)
    assert attempts == [1, 2]


async def test_unsubscribe_waits_for_the_running_handler(
    backend: MemoryBackend, clock: ManualClock
) -> None:
    gate = asyncio.Event()
    finished: list[bytes] = []

    async def slow(received: Received) -> None:
        await gate.wait()
        finished.append(received.body)
        await received.ack()

    sub = await backend.subscribe(SubscriptionSpec("s.a"), slow)
    await backend.publish("s.a", {}, b"x")
    await clock.settle()
    unsubscribing = asyncio.create_task(sub.unsubscribe())
    await clock.settle()
    assert not sub.active
    assert not unsubscribing.done()
    gate.set()
    await asyncio.wait_for(unsubscribing, 1.0)
    assert finished == [b"x"]


async def test_handler_may_unsubscribe_its_own_subscription(
    backend: MemoryBackend, clock: ManualClock
) -> None:
    got: list[bytes] = []
    subs: list[Subscription] = []

    async def once(received: Received) -> None:
        got.append(received.body)
        await received.ack()
        await subs[0].unsubscribe()

    subs.append(await backend.subscribe(SubscriptionSpec("s.a", concurrency=2), once))
    await _publish(backend, "s.a", 3)
    await clock.settle()
    assert not subs[0].active
    # The second worker finds the subscription stopped before it takes anything.
    assert got == [b"0"]


async def test_delivery_handed_over_but_not_started_goes_back_at_once(
    backend: MemoryBackend, clock: ManualClock
) -> None:
    spec = SubscriptionSpec("s.a", durable="svc", ack_wait=30)
    leaving = Deliveries()
    sub = await backend.subscribe(spec, leaving)
    await clock.settle()  # its worker waits for a delivery
    await backend.publish("s.a", {}, b"job")  # handed to that worker, which has not run yet
    await sub.unsubscribe()
    assert leaving.items == []
    staying = Deliveries()
    await backend.subscribe(spec, staying)
    await clock.settle()  # no ack_wait: the delivery never reached a handler
    assert [(r.body, r.attempt) for r in staying.items] == [(b"job", 1)]


async def test_close_gives_back_a_delivery_not_yet_handled(clock: ManualClock) -> None:
    server = MemoryServer(clock=clock)
    spec = SubscriptionSpec("s.a", durable="svc", ack_wait=30)
    async with MemoryBackend(server=server) as first:
        await first.provision(StreamSpec("S", ("s.>",)))
        never = Deliveries()
        await first.subscribe(spec, never)
        await clock.settle()  # its worker waits for a delivery
        await first.publish("s.a", {}, b"job")  # handed over, then cancelled by close()
    assert never.items == []
    async with MemoryBackend(server=server) as second:
        got = Deliveries()
        await second.subscribe(spec, got)
        await clock.settle()
        assert [(r.body, r.attempt) for r in got.items] == [(b"job", 1)]


async def test_backends_sharing_a_server_talk_and_durables_outlive_them(
    clock: ManualClock,
) -> None:
    server = MemoryServer(clock=clock)
    async with MemoryBackend(server=server) as producer:
        await producer.provision(StreamSpec("S", ("s.>",)))
        spec = SubscriptionSpec("s.a", durable="svc", ack_wait=5)
        first = Deliveries(settle=None)
        async with MemoryBackend(server=server) as consumer:
            await consumer.subscribe(spec, first)
            await producer.publish("s.a", {}, b"job")
            await clock.settle()
        assert first.attempts == [1]
        assert producer.consumer_info("S", "svc").num_ack_pending == 1
        second = Deliveries()
        async with MemoryBackend(server=server) as restarted:
            await restarted.subscribe(spec, second)
            await clock.advance(5)
            assert [(r.body, r.attempt) for r in second.items] == [(b"job", 2)]
    assert server.consumer_info("S", "svc").acked == 1


def test_server_settings_belong_to_the_server(clock: ManualClock) -> None:
    with pytest.raises(ConfigurationError, match="MemoryServer"):
        MemoryBackend(server=MemoryServer(), clock=clock)
