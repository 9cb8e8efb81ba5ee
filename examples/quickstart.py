"""Quickstart: one worker agent answers requests; a coordinator sends work to its inbox.

Run it with ``python examples/quickstart.py`` (backend from ACLBUS_BACKEND, default memory).
"""

from __future__ import annotations

import asyncio

from aclbus import ACLMessage, Bus, Delivery, Performative


async def main() -> None:
    async with Bus() as bus:
        worker = bus.agent("worker")
        done = asyncio.Event()

        @worker.on(Performative.REQUEST, message_type="math.sum")
        async def add(msg: ACLMessage) -> ACLMessage:
            return msg.reply(Performative.INFORM, payload={"sum": sum(msg.payload)})

        @worker.on(Performative.INFORM, message_type="news")
        async def news(msg: ACLMessage, delivery: Delivery) -> None:
            print(f"worker got news {msg.payload!r} (attempt {delivery.attempt})")
            done.set()

        await worker.start()

        coordinator = bus.agent("coordinator")
        reply = await bus.request(
            coordinator.message(
                Performative.REQUEST,
                receiver_id="worker",
                message_type="math.sum",
                payload=[1, 2, 3],
            ),
            timeout=2.0,
        )
        print(f"reply: {reply.performative} {reply.payload}")
        assert reply.payload == {"sum": 6}

        await bus.send(
            coordinator.message(
                Performative.INFORM, receiver_id="worker", message_type="news", payload="hi"
            )
        )
        await asyncio.wait_for(done.wait(), 5.0)


if __name__ == "__main__":
    asyncio.run(main())
