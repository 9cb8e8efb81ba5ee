"""FIPA Subscribe: a client subscribes to price updates, reads them in order, then cancels.

    python examples/subscribe.py

Every inform carries its number in the subscription (header ``fipa-sequence``); the
subscriber hands them over in that order.
"""

from __future__ import annotations

import asyncio

from aclbus import ACLMessage, Bus
from aclbus.protocols import SEQUENCE_HEADER, Refused, SubscribePublisher, subscribe

bus = Bus()


def only_known_skus(msg: ACLMessage) -> None:
    """Refuse subscriptions to unknown products."""
    if msg.payload.get("sku") != "A1":
        raise Refused("unknown sku")


prices = SubscribePublisher(bus.agent("prices"), on_subscribe=only_known_skus)


async def main() -> None:
    async with bus:
        client = bus.agent("client")
        try:
            await subscribe(client, "prices", {"sku": "ZZ"}, deadline=2.0)
        except Refused as refused:
            print(f"subscription to ZZ refused: {refused.reason}")
        else:
            raise AssertionError("the publisher should have refused sku ZZ")

        async with await subscribe(client, "prices", {"sku": "A1"}, deadline=2.0) as sub:
            print(f"subscribed; the publisher has {len(prices.subscribers)} subscriber(s)")
            for price in (100, 101, 99, 98, 105):
                await prices.notify({"sku": "A1", "price": price})
            got = []
            async for inform in sub:
                got.append(inform.payload["price"])
                print(f"inform #{inform.headers[SEQUENCE_HEADER]}: price {inform.payload['price']}")
                if len(got) == 5:
                    break
            assert got == [100, 101, 99, 98, 105], got
        # leaving the block cancelled the subscription
        assert prices.subscribers == ()
        print("cancelled; the publisher has no subscriber left")


if __name__ == "__main__":
    asyncio.run(main())
