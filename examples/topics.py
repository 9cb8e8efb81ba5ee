"""Topics: publish on dotted topics; agents subscribe to patterns, with content filters.

    python examples/topics.py        # the embedded nats-server, or ACLBUS_BACKEND=memory

Three agents subscribe while the bus runs: an auditor to every created order
(``orders.*.created``), a desk to big orders anywhere (``orders.>`` filtered on the payload),
and the EU office to EU orders through its ordinary handlers. Then the auditor unsubscribes
and gets nothing more.
"""

from __future__ import annotations

import asyncio

from aclbus import ACLMessage, Bus, Performative

bus = Bus()
seen: dict[str, list[str]] = {"auditor": [], "big-orders": [], "eu-office": []}
arrived = asyncio.Condition()


async def record(agent: str, msg: ACLMessage) -> None:
    async with arrived:
        seen[agent].append(f"{msg.topic}:{msg.payload['total']}")
        arrived.notify_all()


async def wait_for(expected: dict[str, int], timeout: float = 10.0) -> None:
    """Wait until each agent has seen the expected number of messages."""
    async with arrived:
        await asyncio.wait_for(
            arrived.wait_for(lambda: all(len(seen[a]) >= n for a, n in expected.items())),
            timeout,
        )


eu_office = bus.agent("eu-office")


@eu_office.on(Performative.INFORM, topic="orders.eu.*")
async def eu_order(msg: ACLMessage) -> None:
    """Handle any EU order event."""
    await record("eu-office", msg)


async def audit(msg: ACLMessage) -> None:
    """Log every created order."""
    await record("auditor", msg)


async def big_order(msg: ACLMessage) -> None:
    """Call the customer of a big order."""
    await record("big-orders", msg)


async def main() -> None:
    async with bus:
        publisher = bus.agent("shop")  # only publishes: never started
        auditor = bus.agent("auditor")
        desk = bus.agent("big-orders")
        await auditor.start()
        await desk.start()

        # At run time: a handler per subscription, with content filters on the messages.
        await auditor.subscribe("orders.*.created", audit)
        await desk.subscribe(
            "orders.>",
            big_order,
            performatives=[Performative.INFORM],
            message_type="order.*",
            where=lambda msg: msg.payload["total"] >= 100,
        )
        await eu_office.subscribe("orders.eu.*")  # no handler: the agent's own handlers
        print(
            f"subscriptions: auditor {auditor.topics}, desk {desk.topics}, "
            f"eu-office {eu_office.topics}"
        )

        async def publish(topic: str, total: int) -> None:
            event = topic.rsplit(".", 1)[1]
            await bus.publish(
                publisher.message(
                    Performative.INFORM, message_type=f"order.{event}", payload={"total": total}
                ),
                topic=topic,
            )

        await publish("orders.eu.created", 50)
        await publish("orders.us.created", 250)
        await publish("orders.eu.cancelled", 120)
        await wait_for({"auditor": 2, "big-orders": 2, "eu-office": 2})
        await asyncio.sleep(0.3)  # room for a message that should not come
        for agent, got in seen.items():
            print(f"{agent} got {sorted(got)}")
        assert sorted(seen["auditor"]) == ["orders.eu.created:50", "orders.us.created:250"]
        assert sorted(seen["big-orders"]) == ["orders.eu.cancelled:120", "orders.us.created:250"]
        assert sorted(seen["eu-office"]) == ["orders.eu.cancelled:120", "orders.eu.created:50"]

        await auditor.unsubscribe("orders.*.created")
        print(f"auditor unsubscribed; its topics now: {auditor.topics}")
        await publish("orders.eu.created", 10)
        await wait_for({"eu-office": 3})
        await asyncio.sleep(0.3)
        print(
            f"after that: auditor has {len(seen['auditor'])}, eu-office has "
            f"{len(seen['eu-office'])}"
        )
        assert auditor.topics == ()
        assert len(seen["auditor"]) == 2, seen["auditor"]
        assert len(seen["big-orders"]) == 2, seen["big-orders"]  # 10 is not a big order


if __name__ == "__main__":
    asyncio.run(main())
