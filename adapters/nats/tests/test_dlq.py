"""The dead-letter queue on a real nats-server: both ways in, and the `aclbus dlq` commands."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from click.testing import CliRunner

from aclbus import ACLMessage, Bus, Delivery, Performative, Settings
from aclbus.cli import main
from aclbus.dlq import Reason
from aclbus.settings import StreamLimits
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.settings import NatsSettings

WAIT = 10.0


def _bus(url: str, prefix: str, **settings: Any) -> Bus:
    s = Settings(
        backend="nats",
        subject_prefix=prefix,
        streams=StreamLimits(max_bytes=1 << 20, storage="memory"),
        **settings,
    )
    return Bus(s, backend=NatsBackend(s, nats=NatsSettings(servers=[url])), entry_points=False)


async def _eventually(check: Any, timeout: float = WAIT) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.fixture
def prefix() -> str:
    return "dlq" + uuid.uuid4().hex[:8]


async def test_exhausted_deliveries_reach_the_dlq_through_the_advisory(
    nats_server: EmbeddedServer, prefix: str
) -> None:
    release = asyncio.Event()
    attempts: list[int] = []
    bus = _bus(nats_server.url, prefix, ack_wait=0.5, max_deliver=2, handler_concurrency=4)
    async with bus:
        agent = bus.agent("worker")

        @agent.on()
        async def hang(msg: ACLMessage, delivery: Delivery) -> None:
            attempts.append(delivery.attempt)
            await release.wait()  # never finishes in time: as if the process had died

        await agent.start()
        sent = ACLMessage(performative=Performative.REQUEST, sender_id="cli", receiver_id="worker")
        await bus.send(sent)
        [letter] = await _eventually(lambda: bus.dead_letters.list())
        release.set()
    assert letter.reason == Reason.MAX_DELIVER
    assert (letter.origin, letter.attempts, letter.message_id) == ("worker", 2, sent.message_id)
    assert sorted(attempts) == [1, 2]


async def test_handler_path_and_advisory_path_store_one_dead_letter(
    nats_server: EmbeddedServer, prefix: str
) -> None:
    # The handler gives up on its last attempt while the broker also reports it exhausted:
    # one deterministic dedup key, so the message is dead-lettered once.
    bus = _bus(nats_server.url, prefix, ack_wait=0.5, max_deliver=1)
    async with bus:
        agent = bus.agent("worker")

        @agent.on()
        async def fail(msg: ACLMessage, delivery: Delivery) -> None:
            await asyncio.sleep(0.8)  # past ack_wait: the advisory fires meanwhile
            raise RuntimeError("late failure")

        await agent.start()
        await bus.send(
            ACLMessage(performative=Performative.REQUEST, sender_id="cli", receiver_id="worker")
        )
        await _eventually(lambda: bus.dead_letters.list())
        await asyncio.sleep(1.5)  # both paths have had their chance
        letters = await bus.dead_letters.list()
    assert len(letters) == 1


async def _fill_dlq(url: str, prefix: str) -> None:
    bus = _bus(url, prefix)
    async with bus:
        agent = bus.agent("worker")

        @agent.on()
        async def fail(msg: ACLMessage) -> None:
            raise ValueError("cannot do it")

        await agent.start()
        for i in range(3):
            await bus.send(
                ACLMessage(
                    performative=Performative.REQUEST,
                    sender_id="cli",
                    receiver_id="worker",
                    payload={"n": i},
                )
            )
        await _eventually(lambda: _count(bus, 3))


async def _receive_as_spare(url: str, prefix: str) -> list[ACLMessage]:
    got: list[ACLMessage] = []
    async with _bus(url, prefix) as bus:
        spare = bus.agent("spare")

        @spare.on()
        async def take(msg: ACLMessage) -> None:
            got.append(msg)

        await spare.start()
        await _eventually(lambda: _true_if(bool(got)))
    return got


def test_the_dlq_commands(nats_server: EmbeddedServer, prefix: str) -> None:
    asyncio.run(_fill_dlq(nats_server.url, prefix))
    env = {
        "ACLBUS_BACKEND": "nats",
        "ACLBUS_NATS__SERVERS": nats_server.url,
        "ACLBUS_SUBJECT_PREFIX": prefix,
        "ACLBUS_STREAMS__MAX_BYTES": str(1 << 20),
        "ACLBUS_STREAMS__STORAGE": "memory",
        "ACLBUS_PLUGINS": "nats",  # the backend alone: no other installed plugin
        "COLUMNS": "200",
    }
    runner = CliRunner(env=env)
    listed = runner.invoke(main, ["dlq", "ls", "--json"])
    assert listed.exit_code == 0, listed.output
    letters = json.loads(listed.output)
    assert [d["reason"] for d in letters] == [Reason.HANDLER_ERROR] * 3
    assert letters[0]["error_type"] == "ValueError"
    table = runner.invoke(main, ["dlq", "ls"])
    assert "handler-error" in table.output
    assert "ValueError: cannot do it" in table.output

    first = letters[0]["sequence"]
    shown = runner.invoke(main, ["dlq", "show", str(first)])
    assert json.loads(shown.output)["body"] == '{"n":0}'
    missing = runner.invoke(main, ["dlq", "show", "99999"])
    assert missing.exit_code == 1
    assert "no dead letter 99999" in missing.output

    replayed = runner.invoke(main, ["dlq", "replay", str(first), "--to", "spare"])
    assert replayed.exit_code == 0, replayed.output
    assert "replayed 1 dead letter(s) to spare" in replayed.output
    purged = runner.invoke(main, ["dlq", "purge", "--all"])
    assert "deleted 2 dead letter(s)" in purged.output
    assert runner.invoke(main, ["dlq", "ls"]).output.strip() == "the dead-letter queue is empty"
    assert runner.invoke(main, ["dlq", "replay"]).exit_code == 2  # neither id nor --all

    got = asyncio.run(_receive_as_spare(nats_server.url, prefix))
    assert got[0].payload == {"n": 0}
    assert got[0].headers["aclbus-replay-of"] == str(first)


async def _count(bus: Bus, n: int) -> bool:
    return len(await bus.dead_letters.list()) >= n


async def _true_if(value: bool) -> bool:
    return value
