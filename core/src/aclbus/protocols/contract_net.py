"""FIPA Contract Net (SC00029): call for proposals, choose, have the winners do the work.

``cfp`` → ``propose`` | ``refuse`` (by the cfp's ``reply_by``) → ``accept-proposal`` |
``reject-proposal`` → ``inform`` | ``failure``. A proposal that arrives after the deadline is
answered ``reject-proposal`` with ``{"reason": "late"}``, also after the outcome is known,
for as long as the manager still listens (``linger``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from aclbus._internal.uuid7 import new_id
from aclbus.acl import ACLMessage, Performative
from aclbus.errors import ConfigurationError
from aclbus.protocols.callbacks import error_payload, resolve
from aclbus.protocols.conversation import FIPA_CONTRACT_NET, Conversation, check_fields
from aclbus.protocols.deadlines import check_deadline
from aclbus.protocols.errors import ProtocolError
from aclbus.protocols.machine import StateMachine, Transitions
from aclbus.protocols.responder import Responder, Session
from aclbus.subjects import validate_id

if TYPE_CHECKING:
    from aclbus.agent import Agent

__all__ = [
    "CONTRACT_NET_INITIATOR",
    "CONTRACT_NET_PARTICIPANT",
    "ContractNet",
    "ContractNetOutcome",
    "ContractNetParticipant",
    "Select",
    "contract_net",
]

P = Performative

log = logging.getLogger("aclbus.protocols")

CONTRACT_NET_INITIATOR: Final[Transitions] = {
    "cfp-sent": {
        ("in", P.PROPOSE): "proposed",
        ("in", P.REFUSE): "refused",
        ("in", P.NOT_UNDERSTOOD): "not-understood",
    },
    "proposed": {("out", P.ACCEPT_PROPOSAL): "accepted", ("out", P.REJECT_PROPOSAL): "rejected"},
    "accepted": {("in", P.INFORM): "done", ("in", P.FAILURE): "failed"},
}
"""The manager, per bidder, from ``"cfp-sent"``."""

CONTRACT_NET_PARTICIPANT: Final[Transitions] = {
    "idle": {("in", P.CFP): "cfp-received"},
    "cfp-received": {("out", P.PROPOSE): "proposed", ("out", P.REFUSE): "refused"},
    "proposed": {("in", P.ACCEPT_PROPOSAL): "accepted", ("in", P.REJECT_PROPOSAL): "rejected"},
    "accepted": {("out", P.INFORM): "done", ("out", P.FAILURE): "failed"},
}
"""A bidder, from ``"idle"``."""

Select = Callable[[Mapping[str, ACLMessage]], Iterable[str] | Awaitable[Iterable[str]]]
"""``select(proposals)``, plain or async: the bidders to accept, from the in-time proposals."""


@dataclass(frozen=True, slots=True)
class ContractNetOutcome:
    """What a contract net came to.

    Attributes:
        conversation_id: The conversation.
        proposals: The proposals received by the deadline, by bidder.
        refused: The refusals, by bidder.
        accepted: The bidders whose proposals were accepted.
        rejected: The rejected bidders and why: ``"not-selected"`` or ``"late"``.
        results: The ``inform`` of each accepted bidder that finished.
        failures: The ``failure`` of each accepted bidder that failed.
        timed_out: Accepted bidders with no result by the result deadline.
        no_answer: Bidders that had not answered at all when the outcome was made.
        not_understood: Bidders that answered the cfp ``not-understood``.
    """

    conversation_id: str
    proposals: Mapping[str, ACLMessage] = field(default_factory=dict)
    refused: Mapping[str, ACLMessage] = field(default_factory=dict)
    accepted: tuple[str, ...] = ()
    rejected: Mapping[str, str] = field(default_factory=dict)
    results: Mapping[str, ACLMessage] = field(default_factory=dict)
    failures: Mapping[str, ACLMessage] = field(default_factory=dict)
    timed_out: tuple[str, ...] = ()
    no_answer: tuple[str, ...] = ()
    not_understood: tuple[str, ...] = ()


class ContractNet(Conversation):
    """The manager (initiator) of one FIPA Contract Net.

    Args:
        agent: The manager (started here if it is not running).
        bidders: The agents to call for proposals (at least one; repeats are dropped).
        cfp: The call's payload: the task.
        deadline: Seconds the bidders have to answer: the cfp's ``reply_by``. Proposals
            after it are rejected ``"late"``.
        result_deadline: Seconds the accepted bidders have for their result; None:
            ``deadline``.
        select: Which proposals to accept; None accepts every proposal.
        linger: Seconds the manager keeps listening after the outcome while some bidder
            has not answered, to reject its late proposal; None: ``deadline``.
        conversation_id: The conversation's id; None makes a new one.
        **fields: Other fields of the cfp (``message_type``, ``ontology``).

    Raises:
        InvalidIdentifier: A bidder or ``conversation_id`` is not a valid id.
        InvalidDeadline: A deadline is not a positive, finite number of seconds.
        ConfigurationError: No bidder, or ``fields`` sets a field the protocol sets.

    Example:
        ```python
        def cheapest(proposals):
            return [min(proposals, key=lambda b: proposals[b].payload["price"])]

        outcome = await ContractNet(manager, bidders, task, deadline=1.0, select=cheapest).run()
        ```
    """

    def __init__(
        self,
        agent: Agent,
        bidders: Iterable[str],
        cfp: Any = None,
        *,
        deadline: float,
        result_deadline: float | None = None,
        select: Select | None = None,
        linger: float | None = None,
        conversation_id: str | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(agent, FIPA_CONTRACT_NET, conversation_id)
        if isinstance(bidders, str):
            raise ConfigurationError("bidders must be a list of agent ids, not one string")
        self.bidders = tuple(dict.fromkeys(validate_id(b, "bidder id") for b in bidders))
        if not self.bidders:
            raise ConfigurationError("a contract net needs at least one bidder")
        self.deadline = check_deadline("deadline", deadline)
        self.result_deadline = (
            self.deadline
            if result_deadline is None
            else check_deadline("result_deadline", result_deadline)
        )
        self.linger = self.deadline if linger is None else check_deadline("linger", linger)
        if select is not None and not callable(select):
            raise TypeError(f"select must be callable, not {select!r}")
        check_fields(fields)
        self.machines = {
            b: StateMachine(FIPA_CONTRACT_NET, "initiator", CONTRACT_NET_INITIATOR, "cfp-sent")
            for b in self.bidders
        }
        self._select = select
        self._cfp = cfp
        self._fields = fields
        self._cfp_id: str | None = None
        self._bids_close = 0.0
        self._proposals: dict[str, ACLMessage] = {}
        self._answers: dict[str, ACLMessage] = {}
        self._accept_ids: dict[str, str] = {}
        self._rejected: dict[str, str] = {}
        self._late: dict[str, ACLMessage] = {}  # late proposals not yet rejected
        self._finished = False
        self._linger: asyncio.TimerHandle | None = None

    @property
    def rejected(self) -> Mapping[str, str]:
        """Rejected bidders and why, up to now (late ones may come after the outcome)."""
        return MappingProxyType(self._rejected)

    async def start(self) -> ACLMessage:
        """Send the cfp to every bidder; return it.

        Raises:
            ProtocolError: The conversation was already started.
        """
        await self._open()
        self._bids_close = asyncio.get_running_loop().time() + self.deadline
        self._cfp_id = new_id()
        try:
            return await self._send(
                P.CFP,
                self.bidders,
                self._cfp,
                deadline=self.deadline,
                message_id=self._cfp_id,
                **self._fields,
            )
        except BaseException:
            self._end()
            raise

    async def result(self) -> ContractNetOutcome:
        """Collect the bids, award, and collect the results.

        Waits until every bidder answered or the deadline passed, accepts the proposals
        ``select`` chooses and rejects the others (``"not-selected"``), then waits until
        every accepted bidder sent its result or the result deadline passed.

        Raises:
            ConversationCancelled: The conversation was cancelled first.
            ProtocolError: It was never started, or ``select`` chose a bidder that made no
                proposal in time (every proposal is then rejected, ``"aborted"``).
        """
        if self._cfp_id is None:
            raise ProtocolError(f"{self.protocol} {self.id!r}: call start() before result()")
        if self._finished:
            raise ProtocolError(f"{self.protocol} {self.id!r}: the outcome was already made")
        await self._wait(self._all_answered, self._bids_close)
        self._bids_close = min(self._bids_close, asyncio.get_running_loop().time())
        proposals = dict(self._proposals)
        chosen = await self._choose(proposals)
        result_close = asyncio.get_running_loop().time() + self.result_deadline
        for bidder, proposal in proposals.items():
            if bidder in chosen:
                await self._award(bidder, proposal, P.ACCEPT_PROPOSAL, None)
            else:
                await self._award(bidder, proposal, P.REJECT_PROPOSAL, "not-selected")
        accepted = tuple(b for b in proposals if b in chosen)
        await self._wait(lambda: all(self.machines[b].done for b in accepted), result_close)
        timed_out = tuple(b for b in accepted if not self.machines[b].done)
        for bidder in timed_out:
            self.machines[bidder].finish("timed-out")
        return self._finish(proposals, accepted, timed_out)

    async def _choose(self, proposals: dict[str, ACLMessage]) -> frozenset[str]:
        if self._select is None:
            return frozenset(proposals)
        try:
            picked = frozenset(await resolve(self._select, MappingProxyType(proposals)))
            unknown = sorted(picked - proposals.keys())
            if unknown:
                raise ProtocolError(
                    f"select chose {', '.join(map(repr, unknown))}, which made no proposal "
                    f"in time; the proposals were from: {', '.join(proposals) or 'nobody'}"
                )
        except BaseException:
            for bidder, proposal in proposals.items():
                await self._award(bidder, proposal, P.REJECT_PROPOSAL, "aborted")
            self._finished = True
            self._end()
            raise
        return picked

    def _finish(
        self,
        proposals: dict[str, ACLMessage],
        accepted: tuple[str, ...],
        timed_out: tuple[str, ...],
    ) -> ContractNetOutcome:
        self._finished = True
        silent = tuple(b for b in self.bidders if self.machines[b].state == "cfp-sent")
        if silent and not self.ended:
            # Keep listening a while, to answer a late proposal as FIPA says: reject, "late".
            self._linger = asyncio.get_running_loop().call_later(self.linger, self._end)
        else:
            self._end()

        def answers(state: str) -> dict[str, ACLMessage]:
            return {b: m for b, m in self._answers.items() if self.machines[b].state == state}

        return ContractNetOutcome(
            conversation_id=self.id,
            proposals=proposals,
            refused=answers("refused"),
            accepted=accepted,
            rejected=dict(self._rejected),
            results=answers("done"),
            failures=answers("failed"),
            timed_out=timed_out,
            no_answer=silent,
            not_understood=tuple(answers("not-understood")),
        )

    async def run(self) -> ContractNetOutcome:
        """`start`, then `result`."""
        await self.start()
        return await self.result()

    async def cancel(self, *, deadline: float = 1.0) -> dict[str, bool | None]:
        """Cancel the contract net: each bidder still engaged gets a ``cancel``.

        Args:
            deadline: Seconds to wait for the bidders' answers to the cancel.

        Returns:
            Per cancelled bidder: True (confirmed), False (``failure``), None (no answer).
            Empty when the outcome was already made.

        Raises:
            InvalidDeadline: ``deadline`` is not a positive number of seconds.
            ProtocolError: The conversation was never started.
        """
        seconds = check_deadline("deadline", deadline)
        if self._finished or self.ended:
            return {}
        engaged = [b for b, m in self.machines.items() if not m.done]
        for bidder in engaged:
            self.machines[bidder].finish("cancelled")
        return await self._cancel_peers(engaged, seconds)

    def _end(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
        super()._end()

    def _all_answered(self) -> bool:
        return all(m.state != "cfp-sent" for m in self.machines.values())

    async def _award(
        self, bidder: str, proposal: ACLMessage, act: Performative, reason: str | None
    ) -> ACLMessage:
        self.machines[bidder].send(act)
        if act is P.REJECT_PROPOSAL:
            self._rejected[bidder] = reason or "not-selected"
            return await self._reply(proposal, act, {"reason": reason}, expect_answer=False)
        accept_id = self._accept_ids[bidder] = new_id()
        return await self._reply(
            proposal, act, None, deadline=self.result_deadline, message_id=accept_id
        )

    def _take(self, msg: ACLMessage) -> str | None:
        bidder = msg.sender_id
        machine = self.machines[bidder]
        act = msg.performative
        if msg.in_reply_to == self._cfp_id:
            if machine.state != "cfp-sent" or not machine.allows("in", act):
                return f"{act.value} is not expected in state {machine.state!r}"
            machine.receive(act)
            if act is not P.PROPOSE:
                self._answers[bidder] = msg
            elif self._finished or asyncio.get_running_loop().time() > self._bids_close:
                self._late[bidder] = msg
            else:
                self._proposals[bidder] = msg
            return None
        if msg.in_reply_to is not None and msg.in_reply_to == self._accept_ids.get(bidder):
            if not machine.allows("in", act):
                return f"{act.value} is not expected in state {machine.state!r}"
            machine.receive(act)
            self._answers[bidder] = msg
            return None
        return "not a reply to a message of this conversation"

    async def _after_take(self, msg: ACLMessage) -> None:
        late = self._late.pop(msg.sender_id, None)
        if late is not None:
            await self._award(msg.sender_id, late, P.REJECT_PROPOSAL, "late")
            if self._finished and self._all_answered():
                self._end()


async def contract_net(
    agent: Agent,
    bidders: Iterable[str],
    cfp: Any = None,
    *,
    deadline: float,
    result_deadline: float | None = None,
    select: Select | None = None,
    **fields: Any,
) -> ContractNetOutcome:
    """Run a FIPA Contract Net to the end; see `ContractNet` for the arguments."""
    return await ContractNet(
        agent,
        bidders,
        cfp,
        deadline=deadline,
        result_deadline=result_deadline,
        select=select,
        **fields,
    ).run()


Bid = Callable[[ACLMessage], Any | Awaitable[Any]]
"""``bid(cfp)``, plain or async: the proposal's payload; None or `Refused` to refuse."""

Perform = Callable[[ACLMessage, ACLMessage], Any | Awaitable[Any]]
"""``perform(cfp, accept)``, plain or async: do the accepted work, return the result."""

OnReject = Callable[[ACLMessage, ACLMessage], Any | Awaitable[Any]]
"""``on_reject(cfp, reject)``: told of a rejection (``reject.payload["reason"]``)."""


class ContractNetParticipant(Responder):
    """A bidder of FIPA Contract Net on an agent.

    For each cfp, ``bid(cfp)`` runs in a task of its own; what it returns is proposed (None,
    `Refused` or any other exception is a ``refuse``). The bidder then waits at most
    ``decision_timeout`` for ``accept-proposal`` or ``reject-proposal`` (answering the
    proposal), then forgets the conversation. On accept, ``perform(cfp, accept)`` runs and
    its return is sent as ``inform`` (an exception, or exceeding ``timeout``, is a
    ``failure``). On reject, ``on_reject(cfp, reject)`` is called. A ``cancel`` stops the
    work and is answered ``inform``.

    Args:
        agent: The bidding agent.
        bid: ``bid(cfp)``: the proposal's payload, or None to refuse.
        perform: ``perform(cfp, accept)``: the work, once accepted; returns the result.
        on_reject: ``on_reject(cfp, reject)``, plain or async; None: nothing.
        decision_timeout: Seconds to wait for the manager's decision after proposing.
        timeout: Seconds ``perform`` may take; None: no limit.

    Raises:
        InvalidDeadline: A timeout is not a positive number of seconds.
        TypeError: ``bid``, ``perform`` or ``on_reject`` is not callable.
    """

    def __init__(
        self,
        agent: Agent,
        bid: Bid,
        perform: Perform,
        *,
        on_reject: OnReject | None = None,
        decision_timeout: float = 30.0,
        timeout: float | None = None,
    ) -> None:
        if not callable(bid) or not callable(perform):
            raise TypeError("bid and perform must be callables")
        if on_reject is not None and not callable(on_reject):
            raise TypeError(f"on_reject must be callable, not {on_reject!r}")
        self._bid = bid
        self._perform = perform
        self._on_reject = on_reject
        self.decision_timeout = check_deadline("decision_timeout", decision_timeout)
        self.timeout = None if timeout is None else check_deadline("timeout", timeout)
        super().__init__(
            agent,
            FIPA_CONTRACT_NET,
            (P.CFP,),
            role="participant",
            transitions=CONTRACT_NET_PARTICIPANT,
        )

    async def _start(self, session: Session) -> None:
        self._spawn(session, self._propose(session))

    async def _propose(self, session: Session) -> None:
        cfp = session.opening
        try:
            proposal = await resolve(self._bid, cfp)
        except Exception as exc:
            await self._answer(session, cfp, P.REFUSE, error_payload(exc))
            return
        if proposal is None:
            await self._answer(session, cfp, P.REFUSE, {"reason": "declined"})
            return
        sent = await self._answer(session, cfp, P.PROPOSE, proposal)
        if sent is not None:
            session.expects = sent.message_id
            session.timer = asyncio.get_running_loop().call_later(
                self.decision_timeout, self._expire, session
            )

    def _expire(self, session: Session) -> None:
        session.timer = None
        session.machine.finish("timed-out")
        self._forget(session)

    async def _continue(self, session: Session, msg: ACLMessage) -> str | None:
        act = msg.performative
        if msg.in_reply_to is None or msg.in_reply_to != session.expects:
            return "not a reply to this agent's proposal"
        if not session.machine.allows("in", act):
            return f"{act.value} is not expected in state {session.machine.state!r}"
        session.machine.receive(act)
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        if act is P.ACCEPT_PROPOSAL:
            self._spawn(session, self._work(session, msg))
        else:
            self._forget(session)
            if self._on_reject is not None:
                try:
                    await resolve(self._on_reject, session.opening, msg)
                except Exception:  # the user's callback: the rejection itself is handled
                    log.exception("agent %s: on_reject failed", self.agent.id)
        return None

    async def _work(self, session: Session, accept: ACLMessage) -> None:
        try:
            work = resolve(self._perform, session.opening, accept)
            result = await (work if self.timeout is None else asyncio.wait_for(work, self.timeout))
        except Exception as exc:
            await self._answer(session, accept, P.FAILURE, error_payload(exc))
        else:
            await self._answer(session, accept, P.INFORM, result)
