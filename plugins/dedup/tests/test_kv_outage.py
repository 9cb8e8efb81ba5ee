"""The dedup plugin while its KV bucket is unreachable, on the memory engine (SPEC R7).

A bucket handle that fails on demand stands in for a KV leader that is down, frozen or being
elected, or for a network partition between one process and the KV; the engine's streams go
on delivering meanwhile, as they do when only the KV's stream is in trouble. Lost acks come
from the engine's fault injector, as after a broker crash. Time passes only through
``self.advance``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

import aclbus_dedup
from aclbus import ACLMessage, Bus, Performative
from aclbus.backend import KeyValue, KVEntry
from aclbus.backends.memory import Faults, MemoryBackend
from aclbus.errors import BackendClosed
from aclbus.middleware import Delivery
from aclbus.testing import MemoryConfig
from aclbus_dedup import Record, Status, claim_key

LOSE_ACKS = Faults(drop_ack=1.0)
NO_FAULTS = Faults()


def inform(**fields: Any) -> ACLMessage:
    return ACLMessage(
        performative=Performative.INFORM, sender_id="tester", receiver_id="worker", **fields
    )


class FlakyKV(KeyValue):
    """A bucket handle that fails while its backend says the KV is down.

    ``lose_replies`` makes the next writes land in the bucket and then fail, as a write does
    whose reply is lost (the server stored it, the client timed out).
    """

    def __init__(self, inner: KeyValue, backend: OutageBackend) -> None:
        self.bucket = inner.bucket
        self._inner = inner
        self._backend = backend

    def _check(self) -> None:
        if self._backend.kv_down:
            raise BackendClosed(f"the KV bucket {self.bucket!r} is unreachable")

    async def _reply_lost(self) -> None:
        if self._backend.lose_replies > 0:
            self._backend.lose_replies -= 1
            raise TimeoutError(f"no reply from the KV bucket {self.bucket!r}")

    async def get(self, key: str) -> KVEntry | None:
        self._check()
        return await self._inner.get(key)

    async def put(self, key: str, value: bytes) -> int:
        self._check()
        revision = await self._inner.put(key, value)
        await self._reply_lost()
        return revision

    async def create(self, key: str, value: bytes) -> int:
        self._check()
        revision = await self._inner.create(key, value)
        await self._reply_lost()
        return revision

    async def update(self, key: str, value: bytes, revision: int) -> int:
        self._check()
        written = await self._inner.update(key, value, revision)
        await self._reply_lost()
        return written

    async def delete(self, key: str) -> None:
        self._check()
        await self._inner.delete(key)

    async def keys(self) -> list[str]:
        self._check()
        return await self._inner.keys()

    def watch(self, pattern: str = ">") -> AsyncIterator[KVEntry]:
        return self._inner.watch(pattern)


class OutageBackend(MemoryBackend):
    """A memory connection whose KV can be cut off (``kv_down``) while its streams work."""

    kv_down = False
    lose_replies = 0

    async def kv(self, bucket: str) -> KeyValue:
        return FlakyKV(await super().kv(bucket), self)


class OutageMemory(MemoryConfig):
    def make_backend(self) -> OutageBackend:
        return OutageBackend(self.make_settings(), server=self.server)

    def lose_acks(self, lose: bool) -> None:
        self.server.injector.faults = LOSE_ACKS if lose else NO_FAULTS


def backend_of(bus: Bus) -> OutageBackend:
    backend = bus.backend
    assert isinstance(backend, OutageBackend)
    return backend


async def record_of(bus: Bus, message_id: str) -> Record | None:
    kv = await bus.backend.kv(f"{bus.settings.subject_prefix}-dedup")
    entry = await kv.get(claim_key("worker", message_id))
    return None if entry is None else Record.decode(entry.value)


class TestKVOutage(OutageMemory):
    async def test_an_outage_spends_no_delivery_attempt_and_nothing_is_dead_lettered(
        self,
    ) -> None:
        """15 s without the KV under load, max_deliver at its default (10): every message
        handled once, none dead-lettered, and not one redelivery."""
        bus = self.make_bus(plugins=[aclbus_dedup], handler_concurrency=4)
        assert bus.settings.max_deliver == 10
        backend = backend_of(bus)
        runs: Counter[str] = Counter()
        attempts: list[int] = []

        @bus.agent("worker").on(Performative.INFORM)
        async def handle(msg: ACLMessage, delivery: Delivery) -> None:
            runs[msg.message_id] += 1
            attempts.append(delivery.attempt)

        sent: list[str] = []
        async with bus:
            for i in range(20):
                msg = inform(payload=i)
                await bus.send(msg)
                sent.append(msg.message_id)
            await self.advance(0)
            backend.kv_down = True
            for step in range(30):  # 15 s of outage, 4 messages sent every half second
                for j in range(4):
                    msg = inform(payload=[step, j])
                    await bus.send(msg)
                    sent.append(msg.message_id)
                await self.advance(0.5)
            assert len(runs) == 20  # nothing ran unchecked meanwhile
            backend.kv_down = False
            await self.advance(60.0)
            letters = await bus.dead_letters.list()
            delivered = bus.stats.delivered
            stats = aclbus_dedup.stats(bus)
        assert letters == []
        assert runs == Counter({message_id: 1 for message_id in sent})
        assert max(attempts) == 1
        assert delivered == len(sent)  # no nack, no ack timeout: not one redelivery
        assert stats.held == 4  # one per handler slot: the others waited in the stream
        assert stats.claimed == len(sent)

    async def test_a_delivery_is_held_at_most_kv_wait_then_nacked(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("ACLBUS_DEDUP__KV_WAIT", "5")
        bus = self.make_bus(plugins=[aclbus_dedup])
        backend = backend_of(bus)
        attempts: list[int] = []

        @bus.agent("worker").on(Performative.INFORM)
        async def handle(msg: ACLMessage, delivery: Delivery) -> None:
            attempts.append(delivery.attempt)

        async with bus:
            backend.kv_down = True
            await bus.send(inform())
            await self.advance(12.5)  # held 5 s, nacked for 1 s (error_delay), held 5 s, ...
            assert attempts == []
            backend.kv_down = False
            await self.advance(10.0)
            stats = aclbus_dedup.stats(bus)
        assert attempts == [3]
        assert stats.held == 3

    async def test_a_claim_whose_reply_was_lost_is_adopted_not_waited_for(self) -> None:
        """The create landed but its reply was lost: the retry finds the delivery's own claim
        and runs the handler at once, instead of waiting for that claim to go stale."""
        bus = self.make_bus(plugins=[aclbus_dedup])
        backend = backend_of(bus)
        attempts: list[int] = []

        @bus.agent("worker").on(Performative.INFORM)
        async def handle(msg: ACLMessage, delivery: Delivery) -> None:
            attempts.append(delivery.attempt)

        async with bus:
            backend.lose_replies = 1
            await bus.send(inform())
            await self.advance(1.0)
            assert attempts == [1]
            await self.advance(60.0)
            stats = aclbus_dedup.stats(bus)
            delivered = bus.stats.delivered
        assert attempts == [1]
        assert delivered == 1
        assert (stats.claimed, stats.busy, stats.taken_over) == (1, 0, 0)


class TestDoneWrite(OutageMemory):
    async def test_a_failed_done_write_is_retried_before_the_ack(self) -> None:
        """The KV fails while the handler runs, and the ack is lost as in a broker crash: the
        done write is retried (the delivery kept with in_progress) and lands before the ack,
        so the redelivery finds the message done."""
        bus = self.make_bus(plugins=[aclbus_dedup], ack_wait=5.0)  # claim timeout 5 s too
        backend = backend_of(bus)
        runs: list[str] = []

        @bus.agent("worker").on(Performative.INFORM)
        async def handle(msg: ACLMessage) -> None:
            if not runs:  # the first run breaks the KV and loses its ack
                backend.kv_down = True
                self.lose_acks(True)
            runs.append(msg.message_id)

        msg = inform()
        async with bus:
            await bus.send(msg)
            await self.advance(3.0)
            backend.kv_down = False
            await self.advance(1.0)
            self.lose_acks(False)  # the first ack is lost; the broker redelivers later
            await self.advance(30.0)
            record = await record_of(bus, msg.message_id)
            stats = aclbus_dedup.stats(bus)
            letters = await bus.dead_letters.list()
        assert runs == [msg.message_id]
        assert record is not None
        assert record.status is Status.DONE
        assert stats.skipped == 1
        assert (stats.lost, stats.taken_over) == (0, 0)
        assert letters == []

    async def test_a_done_write_that_keeps_failing_goes_on_in_the_background(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The KV stays down past done_wait: the delivery is acked (the ack is lost), the
        done write goes on in the background, and the redelivery is skipped meanwhile."""
        monkeypatch.setenv("ACLBUS_DEDUP__DONE_WAIT", "4")
        bus = self.make_bus(plugins=[aclbus_dedup], ack_wait=5.0)
        backend = backend_of(bus)
        runs: list[str] = []

        @bus.agent("worker").on(Performative.INFORM)
        async def handle(msg: ACLMessage) -> None:
            if not runs:  # the first run breaks the KV and loses its ack
                backend.kv_down = True
                self.lose_acks(True)
            runs.append(msg.message_id)

        msg = inform()
        async with bus:
            await bus.send(msg)
            await self.advance(4.5)  # the foreground retries are over; the ack was lost
            self.lose_acks(False)
            await self.advance(10.0)  # redelivered meanwhile, and skipped
            assert aclbus_dedup.stats(bus).skipped == 1
            backend.kv_down = False
            await self.advance(5.0)
            record = await record_of(bus, msg.message_id)
            stats = aclbus_dedup.stats(bus)
            letters = await bus.dead_letters.list()
        assert runs == [msg.message_id]
        assert record is not None
        assert record.status is Status.DONE
        assert (stats.late_done, stats.lost, stats.taken_over) == (1, 0, 0)
        assert letters == []

    async def test_a_redelivery_elsewhere_waits_for_the_live_claim_then_finds_it_done(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A loses the KV (a partition) after running the message, and its ack is lost. B
        gets the redelivery, finds A's claim live and waits; A's background write lands
        before the claim deadline, so B skips the message instead of running it again."""
        monkeypatch.setenv("ACLBUS_DEDUP__DONE_WAIT", "4")
        monkeypatch.setenv("ACLBUS_DEDUP__CLAIM_TIMEOUT", "20")
        a = self.make_bus(plugins=[aclbus_dedup], ack_wait=5.0)
        b = self.make_bus(plugins=[aclbus_dedup], ack_wait=5.0)
        on_a: list[str] = []
        on_b: list[str] = []

        @a.agent("worker").on(Performative.INFORM)
        async def on_first(msg: ACLMessage) -> None:
            if not on_a:
                backend_of(a).kv_down = True  # only A's way to the KV breaks
                self.lose_acks(True)
            on_a.append(msg.message_id)

        @b.agent("worker").on(Performative.INFORM)
        async def on_second(msg: ACLMessage) -> None:
            on_b.append(msg.message_id)

        msg = inform()
        async with a, b:
            await b.agent("worker").stop()
            await a.send(msg)
            await self.advance(4.5)  # A ran it, gave up the foreground retries, lost its ack
            self.lose_acks(False)
            await a.agent("worker").stop()
            await b.agent("worker").start()
            await self.advance(7.0)  # redelivered to B, which finds A's claim live
            assert aclbus_dedup.stats(b).busy == 1
            backend_of(a).kv_down = False
            await self.advance(30.0)
            record = await record_of(b, msg.message_id)
            stats_a, stats_b = aclbus_dedup.stats(a), aclbus_dedup.stats(b)
        assert on_a == [msg.message_id]
        assert on_b == []
        assert record is not None
        assert record.status is Status.DONE
        assert (stats_a.late_done, stats_a.lost) == (1, 0)
        assert (stats_b.skipped, stats_b.taken_over) == (1, 0)

    async def test_a_done_write_whose_reply_was_lost_is_not_counted_as_lost(self) -> None:
        """The done write landed but its reply was lost: its retry finds the record done by
        this very claim, which is success, not a takeover."""
        bus = self.make_bus(plugins=[aclbus_dedup])
        backend = backend_of(bus)

        @bus.agent("worker").on(Performative.INFORM)
        async def handle(msg: ACLMessage) -> None:
            backend.lose_replies = 1

        msg = inform()
        async with bus:
            await bus.send(msg)
            await self.advance(5.0)
            record = await record_of(bus, msg.message_id)
            stats = aclbus_dedup.stats(bus)
        assert record is not None
        assert record.status is Status.DONE
        assert (stats.lost, stats.late_done, stats.kv_errors) == (0, 0, 1)

    async def test_stopping_the_bus_ends_the_holds_at_once(self) -> None:
        bus = self.make_bus(plugins=[aclbus_dedup])
        backend = backend_of(bus)
        runs: list[str] = []

        @bus.agent("worker").on(Performative.INFORM)
        async def handle(msg: ACLMessage) -> None:
            runs.append(msg.message_id)

        await bus.start()
        try:
            backend.kv_down = True
            await bus.send(inform())
            await self.advance(1.0)
        finally:
            await asyncio.wait_for(bus.stop(), 5.0)  # real seconds: the clock does not move
        assert runs == []
        assert aclbus_dedup.stats(bus).held == 1
