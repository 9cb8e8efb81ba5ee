"""Batch handlers: one call for many messages, each message still settled on its own.

    python examples/batches.py        # the embedded nats-server, or ACLBUS_BACKEND=memory

A sensor fleet sends readings to an ``archiver`` agent, which writes them to its store in
batches of up to 50 (or whatever has come within 0.2 s). One reading is out of range: the
handler refuses it alone (``term``), and the rest of its batch is stored and acknowledged.
The archiver also answers ``query-ref`` requests in batches, one reply per request.
"""

from __future__ import annotations

import asyncio

from aclbus import ACLMessage, Bus, Delivery, Performative

bus = Bus()
archiver = bus.agent("archiver")
sensors = bus.agent("sensors")
store: list[float] = []
batch_sizes: list[int] = []
refused: list[float] = []


@archiver.on_batch(Performative.INFORM, message_type="reading", max_messages=50, max_wait=0.2)
async def archive(msgs: list[ACLMessage], deliveries: list[Delivery]) -> None:
    """Store a batch of readings in one write; refuse the ones out of range."""
    batch_sizes.append(len(msgs))
    rows = []
    for msg, delivery in zip(msgs, deliveries, strict=True):
        value = float(msg.payload["celsius"])
        if not -90.0 <= value <= 60.0:
            refused.append(value)
            await delivery.term("reading out of range")  # settled: not acked, not retried
            continue
        rows.append(value)
    store.extend(rows)  # one write for the whole batch (a database insert in real life)
    # returning normally acknowledges every message not settled above


@archiver.on_batch(Performative.QUERY_REF, max_messages=10, max_wait=0.05)
async def lookup(msgs: list[ACLMessage]) -> list[ACLMessage | None]:
    """Answer a batch of queries: one reply per request, in the same order."""
    return [m.reply(Performative.INFORM, payload={"stored": len(store)}) for m in msgs]


async def main() -> None:
    async with bus:
        readings = [20.0 + i / 10 for i in range(120)]
        readings[57] = 999.0  # a broken sensor
        for value in readings:
            await bus.send(
                sensors.message(
                    Performative.INFORM,
                    receiver_id="archiver",
                    message_type="reading",
                    payload={"celsius": value},
                )
            )
        for _ in range(200):  # at most 10 s
            if len(store) + len(refused) == len(readings):
                break
            await asyncio.sleep(0.05)
        print(f"stored {len(store)} readings in {len(batch_sizes)} batches: {batch_sizes}")
        print(f"refused {refused}")
        assert sorted(store) == sorted(v for v in readings if v != 999.0)
        assert refused == [999.0]
        assert max(batch_sizes) <= 50
        assert len(batch_sizes) < len(readings)

        replies = await asyncio.gather(
            *(
                bus.request(sensors.message(Performative.QUERY_REF, receiver_id="archiver"))
                for _ in range(5)
            )
        )
        print(f"5 queries answered: {[r.payload for r in replies]}")
        assert all(r.payload == {"stored": 119} for r in replies)


if __name__ == "__main__":
    asyncio.run(main())
