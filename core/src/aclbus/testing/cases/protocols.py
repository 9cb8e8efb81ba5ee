"""The FIPA interaction protocols on a bus: Request, Query, Contract Net, Subscribe, Cancel.

Deadlines here are real time (a few tenths of a second), on every backend: the protocols
time their steps with the event loop, as they do in production.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, ClassVar

import pytest

from aclbus.acl import ACLMessage, Performative
from aclbus.backend import Capabilities
from aclbus.bus import Bus
from aclbus.errors import ConfigurationError, InvalidIdentifier
from aclbus.protocols import (
    FIPA_REQUEST,
    SEQUENCE_HEADER,
    ContractNet,
    ContractNetParticipant,
    ConversationCancelled,
    FipaSubscription,
    InvalidDeadline,
    NotUnderstood,
    ProtocolError,
    ProtocolFailure,
    ProtocolTimeout,
    Query,
    QueryResponder,
    Refused,
    Request,
    RequestResponder,
    SequenceGap,
    SubscribePublisher,
    contract_net,
    query,
    request,
    subscribe,
)
from aclbus.testing.cases.base import BusTestcase
from aclbus.testing.collector import Collector, eventually

__all__ = [
    "CancelTestcase",
    "ContractNetTestcase",
    "ProtocolRobustnessTestcase",
    "QueryProtocolTestcase",
    "RequestProtocolTestcase",
    "SubscribeProtocolTestcase",
]

P = Performative
WAIT = 3.0  # wall-clock bound of any single wait here


def _listen(bus: Bus, agent_id: str) -> Collector[ACLMessage]:
    """Give ``agent_id`` a catch-all handler recording what it gets (and answering nothing)."""
    got: Collector[ACLMessage] = Collector()

    @bus.agent(agent_id).on()
    async def record(msg: ACLMessage) -> None:
        got.add(msg)

    return got


class _ProtocolTestcase(BusTestcase):
    requires: ClassVar[Capabilities] = Capabilities(persistent=True, ack=True)


class RequestProtocolTestcase(_ProtocolTestcase):
    """FIPA Request: request → refuse | (agree →) inform | failure, with deadlines."""

    async def test_inform_without_agree(self, bus: Bus) -> None:
        """The result comes back as an inform; the conversation is cleaned up after."""
        worker = bus.agent("worker")
        responder = RequestResponder(worker, lambda msg: {"sum": sum(msg.payload)})
        await worker.start()
        client = bus.agent("client")
        req = Request(client, "worker", [1, 2, 3], deadline=1.0)
        outcome = await req.run()
        assert outcome.payload == {"sum": 6}
        assert (outcome.peer, outcome.agreed) == ("worker", False)
        msg = outcome.message
        assert msg.performative is P.INFORM
        assert (msg.correlation_id, msg.protocol) == (req.id, FIPA_REQUEST)
        assert req.ended
        assert req.state == "done"
        assert client.route(client.message(P.INFORM, correlation_id=req.id)) is None
        await eventually(lambda: not responder.sessions, timeout=WAIT, what="responder cleanup")

    async def test_agree_then_inform(self, bus: Bus) -> None:
        """With ``agree=True`` the responder agrees before the result."""
        worker = bus.agent("worker")

        async def slow(msg: ACLMessage) -> str:
            await asyncio.sleep(0.05)
            return "done"

        RequestResponder(worker, slow, agree=True)
        await worker.start()
        outcome = await request(bus.agent("client"), "worker", "job", deadline=1.0)
        assert outcome.agreed
        assert outcome.payload == "done"

    async def test_refuse(self, bus: Bus) -> None:
        """``decide`` raising `Refused` is a refuse, with its reason, at the initiator."""
        worker = bus.agent("worker")
        performed: list[ACLMessage] = []

        def decide(msg: ACLMessage) -> None:
            raise Refused("busy")

        RequestResponder(worker, performed.append, decide=decide, agree=True)
        await worker.start()
        with pytest.raises(Refused) as caught:
            await request(bus.agent("client"), "worker", "job", deadline=1.0)
        assert caught.value.reason == "busy"
        assert caught.value.peer == "worker"
        assert caught.value.message is not None
        assert caught.value.message.performative is P.REFUSE
        assert performed == []

    async def test_failure_masks_secrets(self, bus: Bus) -> None:
        """An exception in ``perform`` is a failure; a credential in its text is masked."""
        worker = bus.agent("worker")

        def broken(msg: ACLMessage) -> None:
            raise RuntimeError("cannot reach db password=hunter2")

        RequestResponder(worker, broken)
        await worker.start()
        with pytest.raises(ProtocolFailure) as caught:
            await request(bus.agent("client"), "worker", "job", deadline=1.0)
        assert caught.value.reason == "error"
        assert caught.value.message is not None
        payload = caught.value.message.payload
        assert payload["error"] == "RuntimeError"
        assert "hunter2" not in str(payload)

    async def test_response_deadline(self, bus: Bus) -> None:
        """No answer by ``deadline``: `ProtocolTimeout` of step "response"; state cleaned up."""
        got = _listen(bus, "mute")  # takes the request and never answers
        await bus.agent("mute").start()
        req = Request(bus.agent("client"), "mute", "job", deadline=0.3)
        with pytest.raises(ProtocolTimeout) as caught:
            await req.run()
        assert caught.value.step == "response"
        assert req.ended
        assert req.state == "timed-out"
        [sent] = got.items
        assert sent.reply_by is not None
        assert sent.reply_by > sent.timestamp

    async def test_result_deadline(self, bus: Bus) -> None:
        """Agreed but no result by ``result_deadline``: step "result"."""
        worker = bus.agent("worker")
        release = asyncio.Event()

        async def stuck(msg: ACLMessage) -> None:
            await release.wait()

        responder = RequestResponder(worker, stuck, agree=True)
        await worker.start()
        req = Request(bus.agent("client"), "worker", "job", deadline=1.0, result_deadline=0.3)
        with pytest.raises(ProtocolTimeout) as caught:
            await req.run()
        assert caught.value.step == "result"
        await responder.close()

    async def test_responder_timeout_is_a_failure(self, bus: Bus) -> None:
        """``perform`` running past the responder's ``timeout`` is answered failure "timeout"."""
        worker = bus.agent("worker")

        async def slow(msg: ACLMessage) -> None:
            await asyncio.sleep(5)

        RequestResponder(worker, slow, agree=True, timeout=0.2)
        await worker.start()
        with pytest.raises(ProtocolFailure) as caught:
            await request(bus.agent("client"), "worker", "job", deadline=1.0)
        assert caught.value.reason == "timeout"

    async def test_receiver_that_does_not_speak_it(self, bus: Bus) -> None:
        """An agent with no handler answers not-understood: `NotUnderstood`."""
        await bus.agent("stranger").start()
        with pytest.raises(NotUnderstood) as caught:
            await request(bus.agent("client"), "stranger", "job", deadline=1.0)
        assert caught.value.peer == "stranger"


class QueryProtocolTestcase(_ProtocolTestcase):
    """FIPA Query: query-if / query-ref → refuse | (agree →) inform | failure."""

    async def test_query_ref_and_query_if(self, bus: Bus) -> None:
        """Both kinds are answered; the responder sees which act was sent."""
        catalog = bus.agent("catalog")
        acts: list[Performative] = []
        prices = {"A1": 10}

        def answer(msg: ACLMessage) -> Any:
            acts.append(msg.performative)
            if msg.performative is P.QUERY_IF:
                return msg.payload["sku"] in prices
            return prices[msg.payload["sku"]]

        QueryResponder(catalog, answer)
        await catalog.start()
        client = bus.agent("client")
        ref = await query(client, "catalog", {"sku": "A1"}, deadline=1.0)
        known = await query(client, "catalog", {"sku": "B2"}, kind="if", deadline=1.0)
        assert ref.payload == 10
        assert known.payload is False
        assert acts == [P.QUERY_REF, P.QUERY_IF]
        assert ref.message.protocol == "fipa-query"

    async def test_refuse_and_failure(self, bus: Bus) -> None:
        """`Refused` from ``answer`` is a refuse; another exception a failure."""
        catalog = bus.agent("catalog")

        def answer(msg: ACLMessage) -> None:
            if msg.payload == "secret":
                raise Refused("not-allowed")
            raise KeyError(msg.payload)

        QueryResponder(catalog, answer)
        await catalog.start()
        client = bus.agent("client")
        with pytest.raises(Refused) as refused:
            await query(client, "catalog", "secret", deadline=1.0)
        assert refused.value.reason == "not-allowed"
        with pytest.raises(ProtocolFailure):
            await query(client, "catalog", "missing", deadline=1.0)

    async def test_query_deadline(self, bus: Bus) -> None:
        """No answer in time: step "response"."""
        _listen(bus, "mute")
        await bus.agent("mute").start()
        with pytest.raises(ProtocolTimeout) as caught:
            await Query(bus.agent("client"), "mute", "x", kind="if", deadline=0.3).run()
        assert caught.value.step == "response"


class _Bidders:
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
        for name in self.participants:
            await bus.agent(name).start()


def _cheapest(proposals: Any) -> list[str]:
    return [min(proposals, key=lambda b: proposals[b].payload["price"])]


class ContractNetTestcase(_ProtocolTestcase):
    """FIPA Contract Net: cfp → propose/refuse → accept/reject → inform/failure."""

    async def test_award_to_the_cheapest(self, bus: Bus) -> None:
        """The chosen bidder works and informs; the others are rejected "not-selected"."""
        bidders = _Bidders(bus, {"b1": 30, "b2": 10, "b3": 20}, delays={})
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
        bidders = _Bidders(
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
        bidders = _Bidders(bus, {"fast": 10, "slow": 1}, delays={"slow": 0.5})
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
        bidders = _Bidders(bus, {"no": -1, "bad": 5, "slow": 6, "good": 7}, delays={})
        bidders.failing.add("bad")
        bidders.work_time["slow"] = 2.0
        await bidders.start(bus)
        _listen(bus, "mute")
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
        bidders = _Bidders(bus, {"b1": 1}, delays={})
        await bidders.start(bus)
        await bus.agent("stranger").start()
        outcome = await contract_net(bus.agent("manager"), ["b1", "stranger"], "x", deadline=1.0)
        assert outcome.not_understood == ("stranger",)
        assert outcome.accepted == ("b1",)

    async def test_select_of_an_unknown_bidder(self, bus: Bus) -> None:
        """``select`` naming a bidder without a proposal: `ProtocolError`, all rejected."""
        bidders = _Bidders(bus, {"b1": 1, "b2": 2}, delays={})
        await bidders.start(bus)
        net = ContractNet(
            bus.agent("manager"), ["b1", "b2"], "x", deadline=1.0, select=lambda p: ["zz"]
        )
        with pytest.raises(ProtocolError, match="zz"):
            await net.run()
        got = await bidders.rejections.wait_for(2, timeout=WAIT)
        assert sorted(got) == [("b1", "aborted"), ("b2", "aborted")]
        assert net.ended


class SubscribeProtocolTestcase(_ProtocolTestcase):
    """FIPA Subscribe: subscribe → refuse | agree, then ordered informs until cancel."""

    async def test_informs_in_order_then_cancel(self, bus: Bus) -> None:
        """Every notify reaches the subscriber in order, numbered; cancel is confirmed."""
        publisher = SubscribePublisher(bus.agent("prices"))
        await bus.agent("prices").start()
        sub = await subscribe(bus.agent("client"), "prices", {"sku": "A1"}, deadline=1.0)
        assert sub.active
        assert len(publisher.subscribers) == 1
        for i in range(5):
            assert await publisher.notify({"price": i}) == 1
        got = [await asyncio.wait_for(sub.next(), WAIT) for _ in range(5)]
        assert [m.payload for m in got] == [{"price": i} for i in range(5)]
        assert [m.headers[SEQUENCE_HEADER] for m in got] == ["1", "2", "3", "4", "5"]
        assert await sub.cancel() is True
        assert sub.ended
        assert not publisher.subscribers
        assert [m async for m in sub] == []

    async def test_two_subscribers(self, bus: Bus) -> None:
        """Each subscription is numbered on its own; one cancelling leaves the other."""
        publisher = SubscribePublisher(bus.agent("prices"))
        await bus.agent("prices").start()
        first = await subscribe(bus.agent("a"), "prices", deadline=1.0)
        second = await subscribe(bus.agent("b"), "prices", deadline=1.0)
        await publisher.notify(1)
        assert (await asyncio.wait_for(first.next(), WAIT)).payload == 1
        assert await first.cancel()
        await publisher.notify(2)
        assert [(await asyncio.wait_for(second.next(), WAIT)).payload for _ in range(2)] == [1, 2]
        assert len(publisher.subscribers) == 1

    async def test_refused(self, bus: Bus) -> None:
        """``on_subscribe`` raising `Refused` refuses the subscription."""

        def only_vip(msg: ACLMessage) -> None:
            if msg.sender_id != "vip":
                raise Refused("members only")

        publisher = SubscribePublisher(bus.agent("prices"), on_subscribe=only_vip)
        await bus.agent("prices").start()
        with pytest.raises(Refused, match="members only"):
            await subscribe(bus.agent("client"), "prices", deadline=1.0)
        vip = await subscribe(bus.agent("vip"), "prices", deadline=1.0)
        assert [m.sender_id for m in publisher.subscribers] == ["vip"]
        await vip.cancel()

    async def test_agree_deadline(self, bus: Bus) -> None:
        """No agree by the deadline: step "agree"."""
        _listen(bus, "mute")
        await bus.agent("mute").start()
        sub = FipaSubscription(bus.agent("client"), "mute", deadline=0.3)
        with pytest.raises(ProtocolTimeout) as caught:
            await sub.start()
        assert caught.value.step == "agree"
        assert sub.ended

    async def test_publisher_ends_with_failure(self, bus: Bus) -> None:
        """`close` sends failure after the informs: they come first, then `ProtocolFailure`."""
        publisher = SubscribePublisher(bus.agent("prices"))
        await bus.agent("prices").start()
        sub = await subscribe(bus.agent("client"), "prices", deadline=1.0)
        await publisher.notify("last")
        await publisher.close("shutting down")
        assert (await asyncio.wait_for(sub.next(), WAIT)).payload == "last"
        with pytest.raises(ProtocolFailure, match="shutting down"):
            await asyncio.wait_for(sub.next(), WAIT)

    async def test_out_of_order_repeats_and_gaps(self, bus: Bus) -> None:
        """Informs are handed over by number: early ones wait, repeats drop, gaps are skipped."""
        opened: Collector[ACLMessage] = Collector()

        @bus.agent("manual").on(P.SUBSCRIBE)
        async def agree(msg: ACLMessage) -> ACLMessage:
            opened.add(msg)
            return msg.reply(P.AGREE)

        await bus.agent("manual").start()
        sub = await subscribe(bus.agent("client"), "manual", deadline=1.0, gap_timeout=0.3)
        [opening] = opened.items

        async def inform(seq: int) -> None:
            await bus.send(opening.reply(P.INFORM, seq, headers={SEQUENCE_HEADER: str(seq)}))

        for seq in (2, 1, 1, 3, 5):
            await inform(seq)
        got = [(await asyncio.wait_for(sub.next(), WAIT)).payload for _ in range(3)]
        assert got == [1, 2, 3]
        with pytest.raises(SequenceGap) as gap:
            await asyncio.wait_for(sub.next(), WAIT)
        assert gap.value.missing == (4, 4)
        assert (await asyncio.wait_for(sub.next(), WAIT)).payload == 5
        with pytest.raises(ProtocolTimeout):
            await sub.next(timeout=0.2)


class CancelTestcase(_ProtocolTestcase):
    """The cancel meta-protocol, for every protocol: cancel → inform (done) | failure."""

    async def test_cancel_a_request(self, bus: Bus) -> None:
        """The responder's work is stopped and the cancel confirmed; result() says cancelled."""
        worker = bus.agent("worker")
        stopped: Collector[str] = Collector()

        async def long_job(msg: ACLMessage) -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                stopped.add(msg.correlation_id or "")
                raise

        responder = RequestResponder(worker, long_job, agree=True)
        await worker.start()
        req = Request(bus.agent("client"), "worker", "job", deadline=1.0, result_deadline=5.0)
        await req.start()
        await eventually(lambda: req.state == "agreed", timeout=WAIT, what="agree")
        assert await req.cancel() is True
        assert await stopped.wait_for(1, timeout=WAIT) == [req.id]
        with pytest.raises(ConversationCancelled):
            await req.result()
        assert req.ended
        assert not responder.sessions

    async def test_cancel_of_an_ended_request(self, bus: Bus) -> None:
        """Nothing to cancel: False, and no message sent."""
        RequestResponder(bus.agent("worker"), lambda msg: "ok")
        await bus.agent("worker").start()
        req = Request(bus.agent("client"), "worker", None, deadline=1.0)
        await req.run()
        assert await req.cancel() is False

    async def test_cancel_a_query_while_it_waits(self, bus: Bus) -> None:
        """A `result()` waiting when cancel comes raises `ConversationCancelled`."""

        async def slow(msg: ACLMessage) -> int:
            await asyncio.sleep(10)
            return 1

        QueryResponder(bus.agent("catalog"), slow, agree=True)
        await bus.agent("catalog").start()
        q = Query(bus.agent("client"), "catalog", "x", deadline=1.0, result_deadline=5.0)
        await q.start()
        waiting = asyncio.create_task(q.result())
        await eventually(lambda: q.state == "agreed", timeout=WAIT, what="agree")
        assert await q.cancel() is True
        with pytest.raises(ConversationCancelled):
            await asyncio.wait_for(waiting, WAIT)

    async def test_cancel_a_contract_net(self, bus: Bus) -> None:
        """Every engaged bidder gets a cancel, stops working and confirms."""
        bidders = _Bidders(bus, {"b1": 1, "b2": 2}, delays={})
        bidders.work_time.update(b1=10, b2=10)
        await bidders.start(bus)
        net = ContractNet(bus.agent("manager"), ["b1", "b2"], "x", deadline=1.0, result_deadline=5)
        await net.start()
        running = asyncio.create_task(net.result())
        await eventually(
            lambda: all(m.state == "accepted" for m in net.machines.values()),
            timeout=WAIT,
            what="both accepted",
        )
        assert await net.cancel() == {"b1": True, "b2": True}
        assert sorted(await bidders.cancelled.wait_for(2, timeout=WAIT)) == ["b1", "b2"]
        with pytest.raises(ConversationCancelled):
            await asyncio.wait_for(running, WAIT)
        for participant in bidders.participants.values():
            assert not participant.sessions

    async def test_cancel_of_an_unknown_conversation_fails(self, bus: Bus) -> None:
        """A responder asked to cancel a conversation it does not have answers failure."""
        RequestResponder(bus.agent("worker"), lambda msg: None)
        await bus.agent("worker").start()
        got = _listen(bus, "client")
        await bus.agent("client").start()
        await bus.send(
            ACLMessage(
                performative=P.CANCEL,
                sender_id="client",
                receiver_id="worker",
                correlation_id="no-such-thing",
                protocol=FIPA_REQUEST,
            )
        )
        [answer] = await got.wait_for(1, timeout=WAIT)
        assert answer.performative is P.FAILURE
        assert answer.payload == {"reason": "no-such-conversation"}


class ProtocolRobustnessTestcase(_ProtocolTestcase):
    """Strays, out-of-sequence acts, bad input, and conversations running at once.

    Strays and out-of-sequence acts are answered not-understood and change nothing; bad
    input is a typed error; two conversations in flight are kept apart.
    """

    async def test_stray_message_in_a_conversation_is_not_understood(self, bus: Bus) -> None:
        """A message that replies to nothing of the conversation changes nothing."""
        release = asyncio.Event()

        async def job(msg: ACLMessage) -> str:
            await release.wait()
            return "real"

        RequestResponder(bus.agent("worker"), job, agree=True)
        await bus.agent("worker").start()
        intruder = _listen(bus, "intruder")
        await bus.agent("intruder").start()
        req = Request(bus.agent("client"), "worker", None, deadline=1.0, result_deadline=3.0)
        await req.start()
        await eventually(lambda: req.state == "agreed", timeout=WAIT, what="agree")
        fake = ACLMessage(
            performative=P.INFORM,
            sender_id="intruder",
            receiver_id="client",
            correlation_id=req.id,
            in_reply_to="bogus",
            protocol=FIPA_REQUEST,
            payload="fake",
        )
        await bus.send(fake)
        [answer] = await intruder.wait_for(1, timeout=WAIT)
        assert answer.performative is P.NOT_UNDERSTOOD
        assert answer.in_reply_to == fake.message_id
        assert req.state == "agreed"
        release.set()
        outcome = await req.result()
        assert outcome.payload == "real"

    async def test_out_of_sequence_reply_is_not_understood(self, bus: Bus) -> None:
        """The right peer sending an act the protocol does not allow now is not understood."""
        got: Collector[ACLMessage] = Collector()
        odd = bus.agent("odd")

        @odd.on(P.REQUEST)
        async def answer(msg: ACLMessage) -> None:
            await bus.send(msg.reply(P.PROPOSE, "?"))  # not a Request act
            await bus.send(msg.reply(P.INFORM, "result"))

        @odd.on(P.NOT_UNDERSTOOD)
        async def record(msg: ACLMessage) -> None:
            got.add(msg)

        await odd.start()
        outcome = await request(bus.agent("client"), "odd", None, deadline=1.0)
        assert outcome.payload == "result"
        [complaint] = await got.wait_for(1, timeout=WAIT)
        assert complaint.payload["performative"] == "propose"

    async def test_responder_does_not_understand_strays(self, bus: Bus) -> None:
        """Acts outside any conversation are not understood; a not-understood is unanswered."""
        RequestResponder(bus.agent("worker"), lambda msg: None)
        await bus.agent("worker").start()
        got = _listen(bus, "client")
        await bus.agent("client").start()

        def stray(act: Performative, **fields: Any) -> ACLMessage:
            return ACLMessage(
                performative=act,
                sender_id="client",
                receiver_id="worker",
                protocol=FIPA_REQUEST,
                **fields,
            )

        await bus.send(stray(P.AGREE, correlation_id="c1"))
        await bus.send(stray(P.REQUEST))  # no conversation id
        await bus.send(stray(P.NOT_UNDERSTOOD, correlation_id="c2"))
        answers = await got.wait_for(2, timeout=WAIT)
        assert [a.performative for a in answers] == [P.NOT_UNDERSTOOD] * 2
        await asyncio.sleep(0.3)
        assert len(got) == 2

    async def test_two_conversations_at_once(self, bus: Bus) -> None:
        """Two requests in flight on one agent each get their own result."""

        async def echo(msg: ACLMessage) -> Any:
            await asyncio.sleep(0.2 if msg.payload == "first" else 0.0)
            return msg.payload

        RequestResponder(bus.agent("worker"), echo, agree=True)
        await bus.agent("worker").start()
        client = bus.agent("client")
        first, second = await asyncio.gather(
            request(client, "worker", "first", deadline=1.0),
            request(client, "worker", "second", deadline=1.0),
        )
        assert (first.payload, second.payload) == ("first", "second")
        assert first.conversation_id != second.conversation_id

    async def test_bad_input(self, bus: Bus) -> None:
        """Invalid ids, deadlines and fields are typed errors naming what is wrong."""
        client = bus.agent("client")
        with pytest.raises(InvalidIdentifier, match="receiver"):
            Request(client, "no spaces", deadline=1.0)
        with pytest.raises(InvalidIdentifier, match="conversation"):
            Request(client, "worker", deadline=1.0, conversation_id="a.b")
        for bad in (0, -1, math.nan, math.inf, "1", True, None):
            with pytest.raises(InvalidDeadline, match="deadline"):
                Request(client, "worker", deadline=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidDeadline, match="result_deadline"):
            Query(client, "worker", deadline=1.0, result_deadline=-2)
        with pytest.raises(ConfigurationError, match="correlation_id"):
            Request(client, "worker", deadline=1.0, correlation_id="x")
        with pytest.raises(ConfigurationError, match="bidder"):
            ContractNet(client, [], deadline=1.0)
        with pytest.raises(InvalidIdentifier, match="bidder"):
            ContractNet(client, ["ok", "not ok"], deadline=1.0)
        with pytest.raises(InvalidDeadline, match="timeout"):
            RequestResponder(bus.agent("worker"), lambda m: None, timeout=0)
        with pytest.raises(InvalidDeadline, match="gap_timeout"):
            FipaSubscription(client, "pub", deadline=1.0, gap_timeout=math.inf)
        with pytest.raises(ProtocolError, match="start"):
            await Request(client, "worker", deadline=1.0).result()
        _listen(bus, "mute")
        await bus.agent("mute").start()
        first = Request(client, "mute", deadline=1.0, conversation_id="same")
        await first.start()
        with pytest.raises(ProtocolError, match="already running"):
            await Request(client, "mute", deadline=1.0, conversation_id="same").start()
        with pytest.raises(ProtocolTimeout, match="cancel"):
            await first.cancel(deadline=0.3)  # the mute agent never confirms
        assert first.ended
