"""Fault tests on a real nats-server: a consumer process killed before its ack, and a
malformed payload (SCENARIOS 7 and 17)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from typing import Any

from aclbus import ACLMessage, Bus, Delivery, Performative, Settings
from aclbus.dlq import Reason
from aclbus.settings import StreamLimits
from aclbus.wire import encode
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.settings import NatsSettings

WAIT = 15.0

WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from aclbus import Bus, Settings
    from aclbus.settings import StreamLimits
    from aclbus_nats.backend import NatsBackend
    from aclbus_nats.settings import NatsSettings

    async def main(url, prefix):
        settings = Settings(backend="nats", subject_prefix=prefix, ack_wait=1.0,
                            streams=StreamLimits(max_bytes=1 << 20, storage="memory"))
        bus = Bus(settings, backend=NatsBackend(settings, nats=NatsSettings(servers=[url])),
                  entry_points=False)
        async with bus:
            worker = bus.agent("worker")

            @worker.on()
            async def handle(msg, delivery):
                print(f"got {msg.payload} attempt {delivery.attempt}", flush=True)
                await asyncio.sleep(3600)  # killed before it can ack

            await worker.start()
            print("ready", flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def _settings(prefix: str, **extra: Any) -> Settings:
    return Settings(
        backend="nats",
        subject_prefix=prefix,
        streams=StreamLimits(max_bytes=1 << 20, storage="memory"),
        **extra,
    )


def _bus(url: str, settings: Settings) -> Bus:
    backend = NatsBackend(settings, nats=NatsSettings(servers=[url]))
    return Bus(settings, backend=backend, entry_points=False)


async def _line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), WAIT)
    return line.decode().strip()


async def test_a_worker_process_killed_before_its_ack_has_the_message_redelivered(
    nats_server: EmbeddedServer,
) -> None:
    prefix = "kill" + uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACLBUS_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WORKER,
        nats_server.url,
        prefix,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert await _line(proc) == "ready"
        settings = _settings(prefix, ack_wait=1.0)
        async with _bus(nats_server.url, settings) as sender:
            await sender.send(
                ACLMessage(
                    performative=Performative.REQUEST,
                    sender_id="cli",
                    receiver_id="worker",
                    payload="job-1",
                )
            )
            assert await _line(proc) == "got job-1 attempt 1"
            proc.send_signal(signal.SIGKILL)  # dies holding the message, unacked
            await asyncio.wait_for(proc.wait(), WAIT)

            got: asyncio.Queue[tuple[Any, int]] = asyncio.Queue()
            survivor = sender.agent("worker")  # another instance of the same agent

            @survivor.on()
            async def handle(msg: ACLMessage, delivery: Delivery) -> None:
                await got.put((msg.payload, delivery.attempt))

            await survivor.start()
            payload, attempt = await asyncio.wait_for(got.get(), WAIT)
        assert (payload, attempt) == ("job-1", 2)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_malformed_payload_is_dead_lettered_and_the_agent_lives_on(
    nats_server: EmbeddedServer,
) -> None:
    prefix = "bad" + uuid.uuid4().hex[:8]
    async with _bus(nats_server.url, _settings(prefix)) as bus:
        got: asyncio.Queue[ACLMessage] = asyncio.Queue()
        worker = bus.agent("worker")

        @worker.on()
        async def handle(msg: ACLMessage) -> None:
            await got.put(msg)

        await worker.start()
        template = ACLMessage(
            performative=Performative.INFORM, sender_id="cli", receiver_id="worker"
        )
        headers, _ = encode(template, bus.codecs)
        await bus.backend.publish(
            bus.subjects.inbox("worker"), headers, b'{"broken": ', msg_id="x1"
        )
        await bus.send(template.model_copy(update={"payload": "fine"}))
        msg = await asyncio.wait_for(got.get(), WAIT)
        assert msg.payload == "fine"  # the agent kept consuming
        for _ in range(100):
            letters = await bus.dead_letters.list()
            if letters:
                break
            await asyncio.sleep(0.05)
        [letter] = letters
        assert letter.reason == Reason.MALFORMED
        assert letter.body == b'{"broken": '
        assert letter.error_type == "ACLDecodeError"
        assert "malformed JSON" in (letter.error or "")
