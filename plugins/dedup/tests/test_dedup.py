"""The dedup plugin on the memory engine: injected duplicates and lost acks, a manual clock.

Every test passes the plugin explicitly (``make_bus(plugins=[aclbus_dedup])``); the installed
entry points are not loaded. Time passes only through ``self.advance``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import aclbus_dedup
from aclbus import ACLMessage, Bus, Performative, Settings, hookimpl
from aclbus.backend import Capabilities, DeliveryMode, PublishAck, StoredMessage
from aclbus.backends.memory import Faults, MemoryBackend
from aclbus.errors import BackendClosed, CapabilityError, ConfigurationError, PublishTimeout
from aclbus.middleware import ConsumeNext, Delivery, Middleware, MiddlewareFactory
from aclbus.settings import StreamLimits
from aclbus.subjects import TrafficClass
from aclbus.testing import MemoryConfig, eventually
from aclbus_dedup import ConsumeOnce, DedupSettings, PublishRetry, Record, Status, claim_key

N = 200


def inform(receiver: str = "worker", **fields: Any) -> ACLMessage:
    return ACLMessage(
        performative=Performative.INFORM, sender_id="tester", receiver_id=receiver, **fields
    )


def count_runs(bus: Bus, agent_id: str = "worker") -> Counter[str]:
    """Give ``bus`` an agent whose handler counts its runs per message id."""
    runs: Counter[str] = Counter()

    @bus.agent(agent_id).on(Performative.INFORM)
    async def handle(msg: ACLMessage) -> None:
        runs[msg.message_id] += 1
        await asyncio.sleep(0)  # let other deliveries (and duplicates) interleave

    return runs


async def stored(bus: Bus, agent: str = "worker") -> list[StoredMessage]:
    """The messages stored in ``agent``'s inbox."""
    return await bus.backend.read_stream(
        bus.subjects.stream(TrafficClass.INBOX), subject=bus.subjects.inbox(agent), limit=10_000
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


# -- duplicates and lost acks -------------------------------------------------------------


class DuplicatingMemory(MemoryConfig):
    """Nine deliveries in ten are handed over twice."""

    seed = 11

    def make_faults(self) -> Faults:
        return Faults(duplicate=0.9)


class TestInjectedDuplicates(DuplicatingMemory):
    @pytest.mark.parametrize("concurrency", [1, 4])
    async def test_each_message_runs_once(self, concurrency: int) -> None:
        bus = self.make_bus(plugins=[aclbus_dedup], handler_concurrency=concurrency)
        runs = count_runs(bus)
        msgs = [inform(payload=i) for i in range(N)]
        async with bus:
            for msg in msgs:
                await bus.send(msg)
            await self.advance(0)
            await eventually(lambda: len(runs) == N, what=f"{N} messages handled")
            await self.advance(60)  # whatever was nacked or left unacked comes back now
            injected = bus.backend.fault_injector.counts["duplicate"]  # type: ignore[attr-defined]
            stats = aclbus_dedup.stats(bus)
        assert runs == Counter({msg.message_id: 1 for msg in msgs})
        assert injected > N * 0.8
        assert stats.claimed == N
        assert stats.skipped + stats.busy == injected
        if concurrency == 1:
            assert stats.busy == 0  # one at a time: every copy finds its message done

    async def test_without_the_plugin_duplicates_run_twice(self) -> None:
        """The control: the same faults, no plugin, handlers run more than once."""
        bus = self.make_bus()
        runs = count_runs(bus)
        async with bus:
            for i in range(N):
                await bus.send(inform(payload=i))
            await self.advance(0)
            await eventually(lambda: len(runs) == N, what=f"{N} messages handled")
            injected = bus.backend.fault_injector.counts["duplicate"]  # type: ignore[attr-defined]
        assert sum(runs.values()) == N + injected
        assert max(runs.values()) == 2


class LosingAcks(MemoryConfig):
    """Half the acks are lost on the way: the broker redelivers after ``ack_wait``."""

    seed = 5

    def make_faults(self) -> Faults:
        return Faults(drop_ack=0.5)


class TestLostAcks(LosingAcks):
    async def test_redelivered_but_handled_once(self) -> None:
        bus = self.make_bus(plugins=[aclbus_dedup], ack_wait=2.0, max_deliver=100)
        runs = count_runs(bus)
        msgs = [inform(payload=i) for i in range(50)]
        async with bus:
            for msg in msgs:
                await bus.send(msg)
            for _ in range(25):  # 25 ack timeouts: every message acked at last (0.5 ** 25)
                await self.advance(2.5)
            dropped = bus.backend.fault_injector.counts["drop_ack"]  # type: ignore[attr-defined]
            stats = aclbus_dedup.stats(bus)
            delivered = bus.stats.delivered
        assert runs == Counter({msg.message_id: 1 for msg in msgs})
        assert dropped > 20
        assert delivered == len(msgs) + dropped  # each lost ack cost one redelivery...
        assert stats.skipped == dropped  # ...which found its message done


# -- failures, takeovers, the window -------------------------------------------------------


class NackOnError(Middleware):
    """What a retry plugin does: a handler that raised is redelivered a second later."""

    async def consume(self, delivery: Delivery, call_next: ConsumeNext) -> None:
        try:
            await call_next(delivery)
        except Exception:
            await delivery.nack(1.0)


class NackOnErrorPlugin:
    @hookimpl(tryfirst=True)  # outermost: it sees the error after dedup has
    def aclbus_middlewares(self, settings: Settings) -> Sequence[MiddlewareFactory]:
        return [lambda bus: NackOnError()]


class TestClaims(MemoryConfig):
    async def test_a_failing_handler_releases_its_claim_so_the_retry_runs(self) -> None:
        bus = self.make_bus(plugins=[aclbus_dedup, NackOnErrorPlugin()])
        calls: list[str] = []

        @bus.agent("worker").on(Performative.INFORM)
        async def flaky(msg: ACLMessage) -> None:
            calls.append(msg.message_id)
            if len(calls) == 1:
                raise RuntimeError("flaky")

        msg = inform()
        async with bus:
            await bus.send(msg)
            await self.advance(0)
            assert calls == [msg.message_id]
            released = await record_of(bus, "worker", msg.message_id)
            assert released == Record(Status.RELEASED, owner_of(bus))
            await self.advance(1.0)
            assert calls == [msg.message_id] * 2
            record = await record_of(bus, "worker", msg.message_id)
            stats = aclbus_dedup.stats(bus)
        assert record is not None
        assert record.status is Status.DONE
        assert (stats.claimed, stats.released, stats.skipped) == (2, 1, 0)

    async def test_a_handler_that_nacks_itself_runs_again(self) -> None:
        bus = self.make_bus(plugins=[aclbus_dedup])
        calls: list[int] = []

        @bus.agent("worker").on(Performative.INFORM)
        async def later(msg: ACLMessage, delivery: Delivery) -> None:
            calls.append(delivery.attempt)
            if delivery.attempt == 1:
                await delivery.nack(0.5)

        async with bus:
            await bus.send(inform())
            await self.advance(0.5)
            await self.advance(60)
            stats = aclbus_dedup.stats(bus)
        assert calls == [1, 2]
        assert (stats.claimed, stats.released) == (2, 1)

    async def test_a_dead_lettered_message_runs_again_when_replayed(self) -> None:
        bus = self.make_bus(plugins=[aclbus_dedup])
        calls: list[str] = []

        @bus.agent("worker").on(Performative.INFORM)
        async def once_broken(msg: ACLMessage) -> None:
            calls.append(msg.message_id)
            if len(calls) == 1:
                raise ValueError("bad day")

        msg = inform()
        async with bus:
            await bus.send(msg)
            await self.advance(0)
            (letter,) = await bus.dead_letters.list()
            assert letter.message_id == msg.message_id
            await bus.dead_letters.replay(letter.sequence)
            await self.advance(0)
            record = await record_of(bus, "worker", msg.message_id)
        assert calls == [msg.message_id] * 2
        assert record is not None
        assert record.status is Status.DONE

    async def test_a_dead_claimants_message_is_taken_over_after_the_claim_timeout(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A hangs holding the claim; B gets the redelivery, waits, then takes over."""
        monkeypatch.setenv("ACLBUS_DEDUP__CLAIM_TIMEOUT", "8")
        a = self.make_bus(plugins=[aclbus_dedup], ack_wait=5.0)
        b = a.sibling()  # another process running the same agent
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
                await self.advance(0)
                assert on_a == [msg.message_id]
                async with b:
                    await self.advance(5.0)  # ack_wait: redelivered to B; A's claim holds to 8 s
                    assert on_b == []
                    assert aclbus_dedup.stats(b).busy == 1
                    await self.advance(3.0)  # the claim is stale when B's nack delay is over
                    assert on_b == [msg.message_id]
                    assert aclbus_dedup.stats(b).taken_over == 1
                    hang.set()  # A was only stuck: its late finish must not clobber B's record
                    await self.advance(0)
                    record = await record_of(b, "worker", msg.message_id)
                    owner_b = owner_of(b)
            finally:
                hang.set()  # never leave A's handler hanging: stopping A waits for it
            stats_a = aclbus_dedup.stats(a)
        assert record == Record(Status.DONE, owner_b)
        assert stats_a.lost == 1
        assert on_a == on_b == [msg.message_id]

    async def test_in_progress_extends_the_claim(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A long handler that says it is working keeps its claim: B does not take over."""
        monkeypatch.setenv("ACLBUS_DEDUP__CLAIM_TIMEOUT", "8")
        a = self.make_bus(plugins=[aclbus_dedup], ack_wait=5.0)
        b = a.sibling()
        halfway, finish = asyncio.Event(), asyncio.Event()
        on_b: list[str] = []

        @a.agent("worker").on(Performative.INFORM)
        async def slow(msg: ACLMessage, delivery: Delivery) -> None:
            await halfway.wait()
            await delivery.in_progress()
            await finish.wait()

        @b.agent("worker").on(Performative.INFORM)
        async def healthy(msg: ACLMessage) -> None:
            on_b.append(msg.message_id)

        async with a:
            try:
                await a.send(inform())
                await self.advance(0)  # A has it, and waits
                async with b:
                    await self.advance(4.0)
                    halfway.set()  # claim deadline 8 -> 12, ack deadline 5 -> 9
                    await self.advance(5.5)  # t=9.5: redelivered to B, which finds a live claim
                    assert aclbus_dedup.stats(b).busy == 1
                    finish.set()
                    await self.advance(10.0)
                    stats_a, stats_b = aclbus_dedup.stats(a), aclbus_dedup.stats(b)
            finally:
                halfway.set()
                finish.set()
        assert on_b == []
        assert (stats_a.claimed, stats_a.lost, stats_b.taken_over) == (1, 0, 0)

    async def test_after_the_window_a_duplicate_runs_again(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """SCENARIOS 24: within the windows a copy is not stored, or stored but not run."""
        monkeypatch.setenv("ACLBUS_DEDUP__WINDOW", "10")
        bus = self.make_bus(
            plugins=[aclbus_dedup], ack_wait=2.0, streams=StreamLimits(duplicate_window=5.0)
        )
        runs = count_runs(bus)
        msg = inform()
        async with bus:
            (first,) = await bus.send(msg)
            await self.advance(1.0)  # t=1: the broker still knows the id
            (again,) = await bus.send(msg)
            await self.advance(5.0)  # t=6: the broker forgot it; the claim bucket has not
            (third,) = await bus.send(msg)
            await self.advance(0)
            assert runs[msg.message_id] == 1
            await self.advance(6.0)  # t=12: both windows are over
            (fourth,) = await bus.send(msg)
            await self.advance(0)
            stats = aclbus_dedup.stats(bus)
            copies = await stored(bus)
        assert (first.duplicate, again.duplicate, third.duplicate, fourth.duplicate) == (
            False,
            True,
            False,
            False,
        )
        assert len(copies) == 3
        assert runs[msg.message_id] == 2
        assert (stats.publish_duplicates, stats.skipped, stats.claimed) == (1, 1, 2)

    async def test_requests_pass_straight_through(self) -> None:
        bus = self.make_bus(plugins=[aclbus_dedup])

        @bus.agent("worker").on(Performative.REQUEST)
        async def answer(msg: ACLMessage) -> ACLMessage:
            return msg.reply(Performative.INFORM, payload="ok")

        count_runs(bus)
        async with bus:
            request = ACLMessage(
                performative=Performative.REQUEST, sender_id="tester", receiver_id="worker"
            )
            reply = await bus.request(request, timeout=1.0)
            kv = await bus.backend.kv(f"{bus.settings.subject_prefix}-dedup")
            assert await kv.keys() == []  # at most once: nothing to deduplicate
            msg = inform()
            await bus.send(msg)
            await self.advance(0)
            keys = await kv.keys()
        assert reply.payload == "ok"
        assert keys == [claim_key("worker", msg.message_id)]


# -- the publish side ---------------------------------------------------------------------


class FlakyMemoryBackend(MemoryBackend):
    """Its next ``failures`` inbox publishes raise ``error``, after storing if ``store``."""

    failures = 0
    store = True
    error: type[Exception] = PublishTimeout
    attempts = 0

    async def publish(
        self, subject: str, headers: Mapping[str, str], body: bytes, **options: Any
    ) -> PublishAck:
        if ".agent." not in subject:
            return await super().publish(subject, headers, body, **options)
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            if self.store:
                await super().publish(subject, headers, body, **options)
            if self.error is PublishTimeout:
                raise PublishTimeout(subject, 5.0)
            raise self.error(f"the connection is down; the publish to {subject!r} was not sent")
        return await super().publish(subject, headers, body, **options)


class FlakyMemory(MemoryConfig):
    def make_backend(self) -> FlakyMemoryBackend:
        return FlakyMemoryBackend(self.make_settings(), server=self.server)


class TestPublishRetry(FlakyMemory):
    async def test_an_ambiguous_publish_is_stored_once(self) -> None:
        bus = self.make_bus(plugins=[aclbus_dedup])
        runs = count_runs(bus)
        backend: FlakyMemoryBackend = bus.backend  # type: ignore[assignment]
        backend.failures = 1  # stored, but the PubAck is lost: PublishTimeout
        msg = inform()
        async with bus:
            (ack,) = await bus.send(msg)
            await self.advance(0)
            stats = aclbus_dedup.stats(bus)
            copies = await stored(bus)
        assert ack.duplicate is True  # the retry's PubAck: the first attempt had been stored
        assert backend.attempts == 2
        assert len(copies) == 1
        assert runs == Counter({msg.message_id: 1})
        assert (stats.publish_retries, stats.publish_duplicates) == (1, 1)

    async def test_a_publish_lost_while_disconnected_is_sent_again(self) -> None:
        bus = self.make_bus(plugins=[aclbus_dedup])
        backend: FlakyMemoryBackend = bus.backend  # type: ignore[assignment]
        backend.failures, backend.store, backend.error = 2, False, BackendClosed
        async with bus:
            (ack,) = await bus.send(inform())
            copies = await stored(bus)
        assert ack.duplicate is False
        assert backend.attempts == 3
        assert len(copies) == 1

    async def test_retries_are_bounded(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ACLBUS_DEDUP__PUBLISH_RETRIES", "2")
        bus = self.make_bus(plugins=[aclbus_dedup])
        backend: FlakyMemoryBackend = bus.backend  # type: ignore[assignment]
        backend.failures, backend.store = 100, False
        async with bus:
            with pytest.raises(PublishTimeout, match="same message id"):
                await bus.send(inform())
            stats = aclbus_dedup.stats(bus)
        assert backend.attempts == 3
        assert stats.publish_retries == 2

    async def test_at_most_once_publishes_are_not_retried(self) -> None:
        bus = self.make_bus(plugins=[aclbus_dedup])
        backend: FlakyMemoryBackend = bus.backend  # type: ignore[assignment]
        backend.failures, backend.store = 1, False
        async with bus:
            with pytest.raises(PublishTimeout):
                await bus.send(inform(), mode=DeliveryMode.AT_MOST_ONCE)
        assert backend.attempts == 1


# -- settings, capabilities, loading ------------------------------------------------------


class NoKVBackend(MemoryBackend):
    capabilities = dataclasses.replace(MemoryBackend.capabilities, kv=False)


class TestSettings(MemoryConfig):
    def test_settings_come_from_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ACLBUS_DEDUP__WINDOW", "300")
        monkeypatch.setenv("ACLBUS_DEDUP__CLAIM_TIMEOUT", "20")
        monkeypatch.setenv("ACLBUS_DEDUP__PUBLISH_RETRIES", "5")
        monkeypatch.setenv("ACLBUS_DEDUP__BUCKET", "claims")
        monkeypatch.setenv("ACLBUS_DEDUP__KV_WAIT", "90")
        monkeypatch.setenv("ACLBUS_DEDUP__DONE_WAIT", "5")
        monkeypatch.setenv("ACLBUS_DEDUP__KV_BACKOFF", "0.5")
        monkeypatch.setenv("ACLBUS_DEDUP__KV_BACKOFF_MAX", "4")
        dedup, core = DedupSettings(), Settings(backend="memory", subject_prefix="p")
        assert (dedup.window_for(core), dedup.claim_timeout_for(core)) == (300.0, 20.0)
        assert (dedup.publish_retries, dedup.bucket_for(core)) == (5, "claims")
        assert (dedup.kv_wait, dedup.done_wait) == (90.0, 5.0)
        assert (dedup.kv_backoff, dedup.kv_backoff_max) == (0.5, 4.0)

    def test_the_outage_settings_have_sane_defaults(self) -> None:
        dedup = DedupSettings()
        assert (dedup.kv_wait, dedup.done_wait, dedup.error_delay) == (60.0, 10.0, 1.0)
        assert (dedup.kv_backoff, dedup.kv_backoff_max) == (0.1, 2.0)

    def test_defaults_follow_the_bus_settings(self) -> None:
        core = Settings(
            backend="memory",
            subject_prefix="p",
            ack_wait=7.0,
            streams=StreamLimits(duplicate_window=90.0),
        )
        dedup = DedupSettings()
        assert dedup.window_for(core) == 90.0
        assert dedup.claim_timeout_for(core) == 7.0
        assert dedup.bucket_for(core) == "p-dedup"

    def test_settings_come_from_aclbus_toml(self, tmp_path: Path) -> None:
        (tmp_path / "aclbus.toml").write_text("[dedup]\nwindow = 50\npublish = false\n")
        dedup = DedupSettings()
        assert (dedup.window, dedup.publish) == (50.0, False)

    def test_a_bad_bucket_name_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ACLBUS_DEDUP__BUCKET", "a.b")
        with pytest.raises(ValueError, match="dedup bucket"):
            DedupSettings()

    async def test_a_window_shorter_than_the_claim_timeout_fails_at_start(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("ACLBUS_DEDUP__WINDOW", "20")
        bus = self.make_bus(plugins=[aclbus_dedup], ack_wait=30.0)
        with pytest.raises(ConfigurationError, match=r"window \(20 s\).*claim timeout \(30 s\)"):
            await bus.start()
        assert not bus.started

    def test_a_backend_without_kv_is_refused_at_once(self) -> None:
        with pytest.raises(CapabilityError, match="kv"):
            Bus(
                self.make_settings(),
                plugins=[aclbus_dedup],
                backend=NoKVBackend(),
                entry_points=False,
            )

    async def test_each_side_can_be_turned_off(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ACLBUS_DEDUP__CONSUME", "false")
        bus = Bus(
            self.make_settings(), plugins=[aclbus_dedup], backend=NoKVBackend(), entry_points=False
        )
        async with bus:
            assert [type(m) for m in bus.middlewares] == [PublishRetry]
        monkeypatch.setenv("ACLBUS_DEDUP__CONSUME", "true")
        monkeypatch.setenv("ACLBUS_DEDUP__PUBLISH", "false")
        async with self.make_bus(plugins=[aclbus_dedup]) as bus:
            assert [type(m) for m in bus.middlewares] == [ConsumeOnce]
        monkeypatch.setenv("ACLBUS_DEDUP__CONSUME", "false")
        assert aclbus_dedup.aclbus_required_capabilities(self.make_settings()) is None

    async def test_the_bucket_is_provisioned_at_start_with_the_window_as_ttl(self) -> None:
        async with self.make_bus(plugins=[aclbus_dedup]) as bus:
            bucket = self.server.bucket(f"{self.namespace}-dedup")  # no message sent yet
        assert bucket.spec.ttl == bus.settings.streams.duplicate_window == 120.0

    async def test_stats_of_a_bus_without_the_plugin_is_an_error(self) -> None:
        async with self.make_bus() as bus:
            with pytest.raises(ConfigurationError, match="not active"):
                aclbus_dedup.stats(bus)

    def test_the_entry_point_loads_the_plugin(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ACLBUS_PLUGINS", "dedup")
        bus = Bus(Settings(backend="memory"))
        assert "dedup" in [p.name for p in bus.plugins.info()]
        assert Capabilities(kv=True, dedup_window=True) in [
            caps for _, caps in bus.plugins.required_capabilities(bus.settings)
        ]
