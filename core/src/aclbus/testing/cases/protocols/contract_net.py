"""FIPA Contract Net on a bus: awards, late bids, every bidder's end, bad selections."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aclbus.acl import ACLMessage, Performative
from aclbus.bus import Bus
from aclbus.protocols import ContractNet, ContractNetParticipant, ProtocolError, contract_net
from aclbus.testing.cases.protocols.base import WAIT, ProtocolTestcase, listen
from aclbus.testing.collector import Collector, eventually

__all__ = ["Bidders", "ContractNetTestcase"]

P = Performative


class Bidders:
    """Participants with fixed prices; records what each bidder was told."""

    def __init__(self, bus: Bus, prices: dict[str, float], *, delays: dict[str, float]) -> None:
        self.rejections: Collector[tuple[str, str]] = Collector()
        self.performed: Collector[str] = Collector()
        self.cancelled: Collector[str] = Collector()
        self.participants: dict[str, ContractNetParticipant] = {}
        self.work_time: dict[str, float] = {}
        self.failing: set[str] = set()
        for name, price in prices.items():
            self.participants[name] = ContractNetParticipant(
                bus.agent(name),
                self._bidder(name, price, delays.get(name, 0.0)),
                self._worker(name),
                on_reject=self._on_reject(name),
                decision_timeout=2.0,
            )

    def _bidder(self, name: str, price: float, delay: float) -> Any:
        async def bid(cfp: ACLMessage) -> dict[str, Any] | None:
            await asyncio.sleep(delay)
            return None if price < 0 else {"price": price, "bidder": name}

        return bid

    def _worker(self, name: str) -> Any:
        async def perform(cfp: ACLMessage, accept: ACLMessage) -> dict[str, Any]:
            try:
                await asyncio.sleep(self.work_time.get(name, 0.0))
            except asyncio.CancelledError:
                self.cancelled.add(name)
                raise
            if name in self.failing:
                raise RuntimeError("machine broke")
            self.performed.add(name)
            return {"done": cfp.payload, "by": name}

        return perform

    def _on_reject(self, name: str) -> Any:
        def rejected(cfp: ACLMessage, reject: ACLMessage) -> None:
            self.rejections.add((name, reject.payload["reason"]))

        return rejected

    async def start(self, bus: Bus) -> None:
        """Start every bidder's agent."""
        for name in self.participants:
            await bus.agent(name).start()


def _cheapest(proposals: Any) -> list[str]:
    return [min(proposals, key=lambda b: proposals[b].payload["price"])]


class ContractNetTestcase(ProtocolTestcase):
    """FIPA Contract Net: cfp → propose/refuse → accept/reject → inform/failure."""

    async def test_award_to_the_cheapest(self, bus: Bus) -> None:
        """The chosen bidder works and informs; the others are rejected "not-selected"."""
        bidders = Bidders(bus, {"b1": 30, "b2": 10, "b3": 20}, delays={})
        await bidders.start(bus)
        outcome = await contract_net(
            bus.agent("manager"), ["b1", "b2", "b3"], "paint", deadline=1.0, select=_cheapest
        )
        assert set(outcome.proposals) == {"b1", "b2", "b3"}
        assert outcome.accepted == ("b2",)
        assert outcome.rejected == {"b1": "not-selected", "b3": "not-selected"}
        assert outcome.results["b2"].payload == {"done": "paint", "by": "b2"}
        assert (outcome.failures, outcome.timed_out, outcome.no_answer) == ({}, (), ())
        got = await bidders.rejections.wait_for(2, timeout=WAIT)
        assert sorted(got) == [("b1", "not-selected"), ("b3", "not-selected")]
        assert bidders.performed.items == ["b2"]

        def cleaned_up() -> bool:
            return all(not p.sessions for p in bidders.participants.values())

        await eventually(cleaned_up, timeout=WAIT, what="the bidders forget the conversation")

    async def test_late_bids_are_rejected_late(self, bus: Bus) -> None:
        """Proposals after the cfp's reply_by are answered reject-proposal "late"."""
        bidders = Bidders(
            bus, {"fast": 10, "slow1": 1, "slow2": 2}, delays={"slow1": 0.5, "slow2": 0.6}
        )
        bidders.work_time["fast"] = 0.6  # the late bids arrive while the winner works
        await bidders.start(bus)
        cfp_sent: list[ACLMessage] = []
        net = ContractNet(
            bus.agent("manager"), ["fast", "slow1", "slow2"], "x", deadline=0.3, result_deadline=1.5
        )
        cfp_sent.append(await net.start())
        outcome = await net.result()
        assert cfp_sent[0].reply_by is not None
        assert set(outcome.proposals) == {"fast"}
        assert outcome.accepted == ("fast",)
        assert outcome.rejected == {"slow1": "late", "slow2": "late"}
        assert "slow1" not in outcome.results
        got = await bidders.rejections.wait_for(2, timeout=WAIT)
        assert sorted(got) == [("slow1", "late"), ("slow2", "late")]
        assert bidders.performed.items == ["fast"]

    async def test_late_bid_after_the_outcome_is_still_rejected(self, bus: Bus) -> None:
        """A bid arriving after the outcome (within ``linger``) is rejected "late" too."""
        bidders = Bidders(bus, {"fast": 10, "slow": 1}, delays={"slow": 0.5})
        await bidders.start(bus)
        net = ContractNet(bus.agent("manager"), ["fast", "slow"], "x", deadline=0.3, linger=1.5)
        outcome = await net.run()
        assert outcome.no_answer == ("slow",)
        assert outcome.accepted == ("fast",)
        got = await bidders.rejections.wait_for(1, timeout=WAIT)
        assert got == [("slow", "late")]
        assert net.rejected == {"slow": "late"}
        await eventually(lambda: net.ended, timeout=WAIT, what="the manager stops listening")

    async def test_refuse_silence_failure_and_result_deadline(self, bus: Bus) -> None:
        """Each bidder's end is reported: refused, no answer, failed, timed out."""
        bidders = Bidders(bus, {"no": -1, "bad": 5, "slow": 6, "good": 7}, delays={})
        bidders.failing.add("bad")
        bidders.work_time["slow"] = 2.0
        await bidders.start(bus)
        listen(bus, "mute")
        await bus.agent("mute").start()
        outcome = await contract_net(
            bus.agent("manager"),
            ["no", "bad", "slow", "good", "mute"],
            "job",
            deadline=0.4,
            result_deadline=0.4,
        )
        assert set(outcome.refused) == {"no"}
        assert outcome.refused["no"].payload == {"reason": "declined"}
        assert outcome.no_answer == ("mute",)
        assert set(outcome.accepted) == {"bad", "slow", "good"}
        assert set(outcome.failures) == {"bad"}
        assert outcome.timed_out == ("slow",)
        assert set(outcome.results) == {"good"}

    async def test_bidder_that_does_not_speak_it(self, bus: Bus) -> None:
        """An agent without a participant answers not-understood; the others go on."""
        bidders = Bidders(bus, {"b1": 1}, delays={})
        await bidders.start(bus)
        await bus.agent("stranger").start()
        outcome = await contract_net(bus.agent("manager"), ["b1", "stranger"], "x", deadline=1.0)
        assert outcome.not_understood == ("stranger",)
        assert outcome.accepted == ("b1",)

    async def test_select_of_an_unknown_bidder(self, bus: Bus) -> None:
        """``select`` naming a bidder without a proposal: `ProtocolError`, all rejected."""
        bidders = Bidders(bus, {"b1": 1, "b2": 2}, delays={})
        await bidders.start(bus)
        net = ContractNet(
            bus.agent("manager"), ["b1", "b2"], "x", deadline=1.0, select=lambda p: ["zz"]
        )
        with pytest.raises(ProtocolError, match="zz"):
            await net.run()
        got = await bidders.rejections.wait_for(2, timeout=WAIT)
        assert sorted(got) == [("b1", "aborted"), ("b2", "aborted")]
        assert net.ended
