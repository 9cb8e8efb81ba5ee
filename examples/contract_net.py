"""FIPA Contract Net: a manager calls 5 bidders for proposals; two of them bid too late.

    python examples/contract_net.py

The manager gives the bidders 1 s (the cfp's ``reply_by``), accepts the cheapest in-time
proposal, rejects the other in-time ones ("not-selected") and rejects the late ones ("late").
The winner does the job and informs the manager of the result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aclbus import ACLMessage, Bus
from aclbus.protocols import ContractNet, ContractNetParticipant

bus = Bus()

# bidder -> (price, seconds it takes to bid); the last two answer after the 1 s deadline
BIDDERS = {
    "painter-a": (120, 0.0),
    "painter-b": (95, 0.1),
    "painter-c": (150, 0.2),
    "painter-d": (60, 1.5),
    "painter-e": (50, 1.7),
}
rejections: dict[str, str] = {}
all_rejected = asyncio.Event()


def make_bidder(name: str, price: int, thinking: float) -> None:
    async def bid(cfp: ACLMessage) -> dict[str, Any]:
        await asyncio.sleep(thinking)
        return {"price": price}

    async def paint(cfp: ACLMessage, accept: ACLMessage) -> dict[str, Any]:
        await asyncio.sleep(0.1)
        return {"painted": cfp.payload["room"], "by": name, "price": price}

    def rejected(cfp: ACLMessage, reject: ACLMessage) -> None:
        rejections[name] = reject.payload["reason"]
        print(f"{name}: proposal rejected ({reject.payload['reason']})")
        if len(rejections) == len(BIDDERS) - 1:
            all_rejected.set()

    ContractNetParticipant(bus.agent(name), bid, paint, on_reject=rejected)


for bidder, (bid_price, delay) in BIDDERS.items():
    make_bidder(bidder, bid_price, delay)


def cheapest(proposals: Mapping[str, ACLMessage]) -> list[str]:
    return [min(proposals, key=lambda b: proposals[b].payload["price"])]


async def main() -> None:
    async with bus:
        manager = bus.agent("manager")
        net = ContractNet(
            manager,
            list(BIDDERS),
            {"room": "kitchen"},
            deadline=1.0,
            result_deadline=2.0,
            select=cheapest,
            linger=2.0,  # keep listening after the outcome, to reject late bids "late"
        )
        outcome = await net.run()
        print(f"in-time proposals: { {b: m.payload for b, m in outcome.proposals.items()} }")
        print(f"accepted: {outcome.accepted}")
        for winner, result in outcome.results.items():
            print(f"result from {winner}: {result.payload}")
        await asyncio.wait_for(all_rejected.wait(), 5.0)

        assert set(outcome.proposals) == {"painter-a", "painter-b", "painter-c"}
        assert outcome.accepted == ("painter-b",)
        assert outcome.results["painter-b"].payload["painted"] == "kitchen"
        assert rejections == {
            "painter-a": "not-selected",
            "painter-c": "not-selected",
            "painter-d": "late",
            "painter-e": "late",
        }, rejections
        print("contract net done: cheapest in-time bid won, late bids rejected 'late'")


if __name__ == "__main__":
    asyncio.run(main())
