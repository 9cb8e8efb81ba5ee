"""Quickstart: a worker agent that adds numbers and reads news from its inbox.

    python examples/quickstart.py                   # serve the worker and talk to it, then exit
    faststream run examples/quickstart:app          # serve the worker until Ctrl-C
    faststream docs gen examples/quickstart:app     # its AsyncAPI document (asyncapi.json)

With no ``ACLBUS_NATS__SERVERS`` set, aclbus starts a nats-server of its own for the run.
"""

from __future__ import annotations

import asyncio

from aclbus import ACLMessage, Bus, Delivery, Performative

bus = Bus()
worker = bus.agent("worker")
news_arrived = asyncio.Event()


@worker.on(Performative.REQUEST, message_type="math.sum")
async def add(msg: ACLMessage) -> ACLMessage:
    """Answer a list of numbers with their sum."""
    return msg.reply(Performative.INFORM, payload={"sum": sum(msg.payload)})


@worker.on(Performative.INFORM, message_type="news")
async def news(msg: ACLMessage, delivery: Delivery) -> None:
    """Print the news sent to the worker's inbox."""
    print(f"worker got news {msg.payload!r} (attempt {delivery.attempt})")
    news_arrived.set()


def __getattr__(name: str) -> object:
    # `app` is made when first asked for (by `faststream run`): a FastStream app that starts
    # the bus with it. Made lazily, so this module also runs on the memory backend.
    if name == "app":
        return bus.app
    raise AttributeError(name)


async def main() -> None:
    async with bus:  # what `faststream run` does with `app`, here for one script
        coordinator = bus.agent("coordinator")  # only sends: made after start, never started
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
        await asyncio.wait_for(news_arrived.wait(), 5.0)


if __name__ == "__main__":
    asyncio.run(main())
