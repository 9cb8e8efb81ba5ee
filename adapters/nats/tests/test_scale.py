"""Scale: 2,000 agents in one namespace on one nats-server, each answering a request.

A SLOW TEST, bounded: it fails if it takes more than `BUDGET` seconds. Before the consumer
limit became a setting and the priority lane lazy, the 501st agent failed to start (the
server's default of 1,000 consumers per stream, two per agent on the inbox stream).
"""

from __future__ import annotations

import asyncio
import time
import uuid

from aclbus.acl import ACLMessage, Performative
from aclbus.bus import Bus
from aclbus.settings import Settings, StreamLimits
from aclbus.subjects import TrafficClass
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.settings import NatsSettings
from aclbus_nats.testing import delete_streams

AGENTS = 2000
BUDGET = 300.0
"""Seconds the whole test may take (measured: 11-16 s on a shared 2-core machine)."""
STARTING = 32
"""Agents starting at once: each start is a few round trips to the server."""
ASKING = 64
"""Requests in flight at once."""


async def test_2000_agents_of_one_namespace_start_and_each_answers_a_request(
    nats_server: EmbeddedServer,
) -> None:
    """The default limits hold 2,000 agents; each answers; doctor shows the room left."""
    prefix = "scale" + uuid.uuid4().hex[:8]
    # The default consumer limit, as a deployment gets it; small in-memory streams.
    settings = Settings(
        backend="nats",
        subject_prefix=prefix,
        streams=StreamLimits(max_bytes=8 << 20, storage="memory"),
    )

    def make_bus() -> Bus:
        backend = NatsBackend(settings, nats=NatsSettings(servers=[nats_server.url]))
        return Bus(settings, backend=backend, entry_points=False)

    agents, clients = make_bus(), make_bus()
    began = time.monotonic()
    try:
        async with asyncio.timeout(BUDGET):
            await agents.start()
            for i in range(AGENTS):

                @agents.agent(f"a{i}").on(Performative.REQUEST)
                async def answer(msg: ACLMessage) -> ACLMessage:
                    return msg.reply(Performative.INFORM, payload=msg.receiver_id)

            room = asyncio.Semaphore(STARTING)

            async def start(agent_id: str) -> None:
                async with room:
                    await agents.agent(agent_id).start()

            await asyncio.gather(*(start(f"a{i}") for i in range(AGENTS)))
            started = time.monotonic()
            await clients.start()
            slots = asyncio.Semaphore(ASKING)

            async def ask(agent_id: str) -> object:
                async with slots:
                    request = ACLMessage(
                        performative=Performative.REQUEST, sender_id="client", receiver_id=agent_id
                    )
                    return (await clients.request(request, timeout=30.0)).payload

            answers = await asyncio.gather(*(ask(f"a{i}") for i in range(AGENTS)))
            answered = time.monotonic()
            assert answers == [f"a{i}" for i in range(AGENTS)]

            consumers = (await agents.describe())["consumers"]
            inbox = consumers["streams"][agents.subjects.stream(TrafficClass.INBOX)]
            broadcast = consumers["streams"][agents.subjects.stream(TrafficClass.BROADCAST)]
            assert (inbox["used"], broadcast["used"]) == (AGENTS, AGENTS)  # one each per agent
            assert consumers["agents_headroom"] == 10_000 - AGENTS
            print(
                f"\n{AGENTS} agents: started in {started - began:.1f} s, "
                f"answered in {answered - started:.1f} s"
            )
    finally:
        await clients.stop()
        await agents.stop()
        await delete_streams(nats_server.url, prefix)
