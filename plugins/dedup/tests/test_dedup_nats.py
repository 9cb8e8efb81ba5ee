"""The dedup plugin on a real nats-server (the session's embedded one, on loopback).

What only a real server can show: JetStream's own redelivery after ``ack_wait`` when an ack
is lost, its PubAck ``duplicate`` flag for a repeated ``Nats-Msg-Id``, and compare-and-set on
JetStream KV. Waits are in real time, each bounded.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

import aclbus_dedup
from aclbus import ACLMessage, Bus, Performative, Settings, hookimpl, wire
from aclbus.backend import (
    PublishAck,
    Received,
    StoredMessage,
)
from aclbus.errors import PublishTimeout
from aclbus.middleware import ConsumeNext, Delivery, Middleware, MiddlewareFactory
from aclbus.subjects import TrafficClass
from aclbus.testing import eventually
from aclbus_dedup import ConsumeOnce, Record, Status, claim_key
from aclbus_nats.backend import NatsBackend
from aclbus_nats.settings import NatsSettings
from aclbus_nats.testing import NatsConfig


def inform(receiver: str = "worker", **fields: Any) -> ACLMessage:
    return ACLMessage(
        performative=Performative.INFORM, sender_id="tester", receiver_id=receiver, **fields
    )


def count_runs(bus: Bus, agent_id: str = "worker") -> Counter[str]:
    runs: Counter[str] = Counter()

    @bus.agent(agent_id).on(Performative.INFORM)
    async def handle(msg: ACLMessage) -> None:
        runs[msg.message_id] += 1

    return runs


async def stored(bus: Bus, agent: str = "worker") -> list[StoredMessage]:
    return await bus.backend.read_stream(
        bus.subjects.stream(TrafficClass.INBOX), subject=bus.subjects.inbox(agent), limit=1000
    )


async def record_of(bus: Bus, agent: str, message_id: str) -> Record | None:
    kv = await bus.backend.kv(f"{bus.settings.subject_prefix}-dedup")
    entry = await kv.get(claim_key(agent, message_id))
    return None if entry is None else Record.decode(entry.value)


def owner_of(bus: Bus) -> str:
    """The owner name ``bus`` writes into its claim records."""
    (consume,) = [m for m in bus.middlewares if isinstance(m, ConsumeOnce)]
    assert consume.claims is not None
    return consume.claims.owner


# -- a lost ack -------------------------------------------------------------------------------


class AckLost(Received):
    """A delivery whose ack never reaches the server (the others get through)."""

    __slots__ = ("inner",)

    def __init__(self, inner: Received) -> None:
        super().__init__(
            inner.subject,
            inner.headers,
            inner.body,
            reply=inner.reply,
            attempt=inner.attempt,
            sequence=inner.sequence,
            mode=inner.mode,
            stream=inner.stream,
        )
        self.inner = inner

    async def _ack(self) -> None:
        pass  # lost on the way: JetStream redelivers after ack_wait

    async def _nack(self, delay: float | None) -> None:
        await self.inner.nack(delay)

    async def _term(self, reason: str | None) -> None:
        await self.inner.term(reason)

    async def _in_progress(self) -> None:
        await self.inner.in_progress()


class LoseFirstAcks(Middleware):
    """Outermost: the first delivery of every message loses its ack."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    async def consume(self, delivery: Delivery, call_next: ConsumeNext) -> None:
        if delivery.message.message_id not in self.seen:
            self.seen.add(delivery.message.message_id)
            delivery.received = AckLost(delivery.received)
        await call_next(delivery)


class LoseFirstAcksPlugin:
    @hookimpl(tryfirst=True)
    def aclbus_middlewares(self, settings: Settings) -> Sequence[MiddlewareFactory]:
        return [lambda bus: LoseFirstAcks()]


class FlakyNatsBackend(NatsBackend):
    """Its next ``failures`` inbox publishes really publish, then raise `PublishTimeout`."""

    failures = 0
    attempts = 0

    async def publish(
        self, subject: str, headers: Mapping[str, str], body: bytes, **options: Any
    ) -> PublishAck:
        ack = await super().publish(subject, headers, body, **options)
        if ".agent." in subject:
            self.attempts += 1
            if self.failures > 0:
                self.failures -= 1
                raise PublishTimeout(subject, self.nats_settings.publish_timeout)
        return ack


class NackOnError(Middleware):
    """What a retry plugin does: a handler that raised is redelivered a little later."""

    async def consume(self, delivery: Delivery, call_next: ConsumeNext) -> None:
        try:
            await call_next(delivery)
        except Exception:
            await delivery.nack(0.2)


class NackOnErrorPlugin:
    @hookimpl(tryfirst=True)
    def aclbus_middlewares(self, settings: Settings) -> Sequence[MiddlewareFactory]:
        return [lambda bus: NackOnError()]


class TestOnNats(NatsConfig):
    async def test_a_lost_ack_is_redelivered_but_handled_once(self) -> None:
        bus = self.make_bus(plugins=[aclbus_dedup, LoseFirstAcksPlugin()], ack_wait=1.0)
        runs = count_runs(bus)
        msgs = [inform(payload=i) for i in range(5)]
        async with bus:
            for msg in msgs:
                await bus.send(msg)
            await eventually(
                lambda: aclbus_dedup.stats(bus).skipped == len(msgs),
                timeout=10.0,
                what="every redelivery found its message done",
            )
            await asyncio.sleep(1.5)  # one more ack_wait: nothing else comes back
            stats = aclbus_dedup.stats(bus)
            delivered = bus.stats.delivered
            records = [await record_of(bus, "worker", m.message_id) for m in msgs]
        assert runs == Counter({m.message_id: 1 for m in msgs})
        assert delivered == 2 * len(msgs)
        assert (stats.claimed, stats.skipped, stats.busy) == (len(msgs), len(msgs), 0)
        assert {r.status for r in records if r is not None} == {Status.DONE}

    async def test_the_same_message_twice_is_stored_once(self) -> None:
        bus = self.make_bus(plugins=[aclbus_dedup])
        runs = count_runs(bus)
        msg = inform()
        async with bus:
            (first,) = await bus.send(msg)
            (second,) = await bus.send(msg)
            await eventually(lambda: runs[msg.message_id] == 1, what="the message handled")
            await asyncio.sleep(0.2)
            copies = await stored(bus)
            stats = aclbus_dedup.stats(bus)
        assert (first.duplicate, second.duplicate) == (False, True)
        assert second.sequence == first.sequence
        assert len(copies) == 1
        assert runs == Counter({msg.message_id: 1})
        assert stats.publish_duplicates == 1

    async def test_an_ambiguous_publish_is_retried_and_stored_once(self) -> None:
        backend = FlakyNatsBackend(self.make_settings(), nats=NatsSettings(servers=[self._url]))
        backend.failures = 1
        bus = Bus(self.make_settings(), plugins=[aclbus_dedup], backend=backend, entry_points=False)
        runs = count_runs(bus)
        msg = inform()
        async with bus:
            (ack,) = await bus.send(msg)
            await eventually(lambda: runs[msg.message_id] == 1, what="the message handled")
            copies = await stored(bus)
            stats = aclbus_dedup.stats(bus)
        assert backend.attempts == 2
        assert ack.duplicate is True
        assert len(copies) == 1
        assert (stats.publish_retries, stats.publish_duplicates) == (1, 1)

    async def test_a_copy_the_broker_cannot_catch_runs_once(self) -> None:
        """A copy under another dedup key (a resend after the broker's window, a foreign
        client's retry) is stored again; the consume side still runs the handler once."""
        bus = self.make_bus(plugins=[aclbus_dedup])
        runs = count_runs(bus)
        msg = inform()
        async with bus:
            await bus.send(msg)
            headers, body = wire.encode(msg, bus.codecs)
            again = await bus.backend.publish(
                bus.subjects.inbox("worker"), headers, body, msg_id=f"{msg.message_id}-resent"
            )
            await eventually(
                lambda: aclbus_dedup.stats(bus).skipped == 1, what="the copy found it done"
            )
            copies = await stored(bus)
        assert again.duplicate is False
        assert len(copies) == 2
        assert runs == Counter({msg.message_id: 1})

    async def test_a_failed_run_is_released_and_retried(self) -> None:
        bus = self.make_bus(plugins=[aclbus_dedup, NackOnErrorPlugin()])
        calls: list[int] = []

        @bus.agent("worker").on(Performative.INFORM)
        async def flaky(msg: ACLMessage, delivery: Delivery) -> None:
            calls.append(delivery.attempt)
            if delivery.attempt == 1:
                raise RuntimeError("flaky")

        msg = inform()
        async with bus:
            await bus.send(msg)
            await eventually(lambda: len(calls) == 2, what="the retry ran")
            await eventually(
                lambda: aclbus_dedup.stats(bus).claimed == 2, what="the retry claimed it"
            )
            await asyncio.sleep(0.2)
            record = await record_of(bus, "worker", msg.message_id)
            stats = aclbus_dedup.stats(bus)
        assert calls == [1, 2]
        assert record is not None
        assert record.status is Status.DONE
        assert (stats.released, stats.taken_over) == (1, 0)

    async def test_a_hung_claimant_is_taken_over(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A holds the claim and hangs; B, another process, gets the redelivery and takes
        over once the claim timeout has passed; A's late finish does not overwrite B's."""
        monkeypatch.setenv("ACLBUS_DEDUP__CLAIM_TIMEOUT", "1.5")
        a = self.make_bus(plugins=[aclbus_dedup], ack_wait=1.0)
        b = a.sibling()
        hang = asyncio.Event()
        on_a: list[str] = []
        on_b: list[str] = []

        @a.agent("worker").on(Performative.INFORM)
        async def stuck(msg: ACLMessage) -> None:
            on_a.append(msg.message_id)
            await hang.wait()

        @b.agent("worker").on(Performative.INFORM)
        async def healthy(msg: ACLMessage) -> None:
            on_b.append(msg.message_id)

        msg = inform()
        async with a:
            try:
                await a.send(msg)
                await eventually(lambda: on_a == [msg.message_id], what="A got it")
                async with b:
                    await eventually(lambda: on_b == [msg.message_id], timeout=10.0, what="B ran")
                    stats_b = aclbus_dedup.stats(b)
                    hang.set()
                    await eventually(lambda: aclbus_dedup.stats(a).lost == 1, what="A lost it")
                    record = await record_of(b, "worker", msg.message_id)
                    owner_b = owner_of(b)
            finally:
                hang.set()
        assert stats_b.taken_over == 1
        assert record == Record(Status.DONE, owner_b)
