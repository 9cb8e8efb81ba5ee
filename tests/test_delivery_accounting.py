"""Delivery accounting on a real nats-server (SPEC R6-R7, the seed's 99.99 % delivery).

10,000 messages to one agent; handlers fail at random (about 5 %, seeded) and some messages
are poison (they always fail). With the retry and dedup plugins, every message must end up
handled exactly once or in the dead-letter queue: none lost, none handled twice.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter

import aclbus_dedup
import aclbus_retry
from aclbus import ACLMessage, Bus, Performative, Settings
from aclbus.dlq import Reason
from aclbus.settings import StreamLimits
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.settings import NatsSettings

MESSAGES = 10_000
POISON_EVERY = 997  # about 10 poison messages
FAILURE_RATE = 0.05
DEADLINE = 240.0


async def test_every_message_is_handled_once_or_dead_lettered(
    nats_server: EmbeddedServer,
) -> None:
    prefix = "acct" + uuid.uuid4().hex[:8]
    settings = Settings(
        backend="nats",
        subject_prefix=prefix,
        handler_concurrency=16,
        ack_wait=10.0,
        streams=StreamLimits(max_bytes=64 << 20, storage="memory"),
    )
    backend = NatsBackend(settings, nats=NatsSettings(servers=[nats_server.url]))
    retry = aclbus_retry.RetryPlugin(
        aclbus_retry.RetrySettings(max_attempts=3, initial_interval=0.05, max_interval=0.2),
        rng=random.Random(7),
    )
    bus = Bus(settings, backend=backend, plugins=[retry, aclbus_dedup], entry_points=False)
    rng = random.Random(20261127)
    fail_plan = {i: rng.random() < FAILURE_RATE for i in range(MESSAGES)}
    successes: Counter[int] = Counter()
    attempts: Counter[int] = Counter()
    done = asyncio.Event()
    poison = {i for i in range(MESSAGES) if i % POISON_EVERY == POISON_EVERY - 1}

    async with bus:
        worker = bus.agent("worker")

        @worker.on(Performative.REQUEST)
        async def handle(msg: ACLMessage) -> None:
            i = msg.payload["i"]
            attempts[i] += 1
            if i in poison:
                raise ValueError(f"poison message {i}")
            if fail_plan[i] and attempts[i] == 1:
                raise RuntimeError("transient failure")
            successes[i] += 1
            if len(successes) >= MESSAGES - len(poison):
                done.set()

        await worker.start()
        started = time.perf_counter()
        for i in range(MESSAGES):
            await bus.send(
                ACLMessage(
                    performative=Performative.REQUEST,
                    sender_id="load",
                    receiver_id="worker",
                    payload={"i": i},
                )
            )
        await asyncio.wait_for(done.wait(), DEADLINE)
        letters = []
        for _ in range(200):  # the last poison messages finish their retries
            letters = await bus.dead_letters.list(limit=1000)
            if len(letters) >= len(poison):
                break
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - started

    dead = {letter.message(bus).payload["i"] for letter in letters}
    handled = set(successes)
    lost = set(range(MESSAGES)) - handled - dead
    twice = {i for i, n in successes.items() if n > 1}
    print(
        f"\ndelivery accounting: {len(handled)} handled once, {len(dead)} dead-lettered, "
        f"{len(lost)} lost, {len(twice)} handled twice, of {MESSAGES} "
        f"({len(handled) / (MESSAGES - len(poison)):.4%} of deliverable ones delivered) "
        f"in {elapsed:.1f} s; transient failures retried: {sum(fail_plan.values())}"
    )
    assert not lost
    assert not twice
    assert dead == poison
    assert {letter.reason for letter in letters} == {Reason.EXHAUSTED}
    assert all(letter.attempts == 3 for letter in letters)
