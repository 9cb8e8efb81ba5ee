"""The parts of every FIPA protocol: state machines, deadlines, initiators and responders.

A `StateMachine` per role and conversation, the deadline of each step, the initiator's
`Conversation` and the responder's `Responder`.

Messages of a conversation are matched strictly: on the conversation id (``correlation_id``)
and on ``in_reply_to``, which must name a message this side sent to that peer. Anything else
is answered ``not-understood`` (never a ``not-understood`` itself) and leaves the state as it
was: a stray or malicious message cannot move a conversation, nor crash the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

from aclbus._internal.uuid7 import new_id
from aclbus.acl import ACLMessage, Performative
from aclbus.dlq import redact
from aclbus.protocols.errors import (
    ConversationCancelled,
    InvalidDeadline,
    OutOfSequence,
    ProtocolError,
    ProtocolFailure,
    ProtocolTimeout,
    Refused,
)
from aclbus.subjects import validate_id

if TYPE_CHECKING:
    from aclbus.agent import Agent

__all__ = [
    "FIPA_CONTRACT_NET",
    "FIPA_QUERY",
    "FIPA_REQUEST",
    "FIPA_SUBSCRIBE",
    "MAX_DEADLINE",
    "Conversation",
    "Direction",
    "Outcome",
    "Responder",
    "StateMachine",
    "Transitions",
    "check_deadline",
]

FIPA_REQUEST: Final = "fipa-request"
FIPA_QUERY: Final = "fipa-query"
FIPA_CONTRACT_NET: Final = "fipa-contract-net"
FIPA_SUBSCRIBE: Final = "fipa-subscribe"

MAX_DEADLINE: Final = 7 * 24 * 3600.0
"""The longest deadline of a step, in seconds (a week): longer is a mistake, not a plan."""

log = logging.getLogger("aclbus.protocols")

Direction = Literal["in", "out"]
"""Whether the role receives (``"in"``) or sends (``"out"``) the act."""

Transitions = Mapping[str, Mapping[tuple[Direction, Performative], str]]
"""``{state: {(direction, act): next_state}}``; a state with no entry is final."""

P = Performative


def check_deadline(name: str, value: object) -> float:
    """Return ``value`` as seconds if it is a usable deadline.

    Args:
        name: The parameter's name, for the error.
        value: The candidate: an int or float, finite, above 0, at most `MAX_DEADLINE`.

    Raises:
        InvalidDeadline: It is not.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidDeadline(name, value)
    seconds = float(value)
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_DEADLINE):
        raise InvalidDeadline(name, value)
    return seconds


def reply_by(seconds: float) -> datetime:
    """The ``reply_by`` of a step that must be answered within ``seconds``."""
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def resolve(func: Callable[..., Any], *args: Any) -> Any:
    """Call a user callback that may be plain or async; return its result."""
    result = func(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


def error_payload(exc: BaseException) -> dict[str, Any]:
    """The payload of a ``refuse``/``failure`` sent because a callback raised ``exc``."""
    if isinstance(exc, Refused | ProtocolFailure):
        return {"reason": exc.reason or "unspecified"}
    if isinstance(exc, TimeoutError):
        return {"reason": "timeout"}
    # An exception's text may hold a credential: mask it before it leaves the agent.
    return {"reason": "error", "error": type(exc).__name__, "message": redact(str(exc))}


class StateMachine:
    """The states of one role (initiator, participant) in one conversation with one peer.

    Args:
        protocol: The protocol id, for errors.
        role: The role, for errors (``"initiator"``).
        transitions: Which acts, received or sent, lead from each state to which next.
        initial: The first state.

    Example::

        machine = StateMachine("fipa-request", "initiator", REQUEST_INITIATOR, "requested")
        machine.receive(Performative.AGREE)  # -> "agreed"
    """

    __slots__ = ("_transitions", "protocol", "role", "state")

    def __init__(self, protocol: str, role: str, transitions: Transitions, initial: str) -> None:
        self.protocol = protocol
        self.role = role
        self._transitions = transitions
        self.state = initial

    def __repr__(self) -> str:
        return f"<StateMachine {self.protocol} {self.role} {self.state!r}>"

    @property
    def done(self) -> bool:
        """True in a final state: no act leads anywhere from it."""
        return not self._transitions.get(self.state)

    def allows(self, direction: Direction, performative: Performative | str) -> bool:
        """Whether the act may be received (``"in"``) or sent (``"out"``) now."""
        steps = self._transitions.get(self.state, {})
        return (direction, Performative(performative)) in steps

    def receive(self, performative: Performative | str) -> str:
        """Take a received act; return the new state.

        Raises:
            OutOfSequence: The act is not allowed now (the state is unchanged).
        """
        return self._step("in", Performative(performative))

    def send(self, performative: Performative | str) -> str:
        """Take a sent act; return the new state.

        Raises:
            OutOfSequence: The act is not allowed now (the state is unchanged).
        """
        return self._step("out", Performative(performative))

    def finish(self, state: str) -> None:
        """End outside the table: ``"timed-out"`` or ``"cancelled"`` (a final state)."""
        self.state = state

    def _step(self, direction: Direction, act: Performative) -> str:
        after = self._transitions.get(self.state, {}).get((direction, act))
        if after is None:
            verb = "receive" if direction == "in" else "send"
            raise OutOfSequence(self.protocol, self.role, self.state, f"{verb} {act.value}")
        self.state = after
        return after


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a Request or Query ended well: the responder's result.

    Attributes:
        conversation_id: The conversation.
        peer: The agent that answered.
        agreed: Whether it sent ``agree`` before the result.
        message: The result (``inform``, ``inform-if`` or ``inform-ref``).
    """

    conversation_id: str
    peer: str
    agreed: bool
    message: ACLMessage

    @property
    def payload(self) -> Any:
        """The result's payload."""
        return self.message.payload


class Conversation:
    """The initiator's side of one conversation: it sends, and takes the answers.

    Subclasses (`Request`, `ContractNet`, ...) hold one `StateMachine` per peer. While the
    conversation is open its messages go to it before any of the agent's handlers
    (`Agent.on_conversation`); an answer that does not reply (``in_reply_to``) to a message
    sent here to that same peer, or that its state machine does not allow, is answered
    ``not-understood``. It ends (and stops taking messages) on its outcome, its deadline or
    its cancellation.

    Args:
        agent: The initiating agent; started here if it is not running yet.
        protocol: The protocol id.
        conversation_id: The conversation's id; None makes a new unique one.

    Raises:
        InvalidIdentifier: ``conversation_id`` is not a valid id.

    Attributes:
        agent: The initiating agent.
        protocol: The protocol id.
        id: The conversation id (``correlation_id`` of every message).
    """

    def __init__(self, agent: Agent, protocol: str, conversation_id: str | None = None) -> None:
        self.agent = agent
        self.protocol = validate_id(protocol, "protocol")
        self.id = validate_id(
            conversation_id if conversation_id is not None else new_id(), "conversation id"
        )
        # in_reply_to -> the peers allowed to answer that message
        self._awaiting: dict[str, frozenset[str]] = {}
        self._changed = asyncio.Event()
        self._started = False
        self._ended = False
        self._cancelled = False
        self._cancel_ids: dict[str, str] = {}  # peer -> id of the cancel sent to it
        self._cancel_answers: dict[str, bool] = {}  # peer -> inform-done (True) / failure

    def __repr__(self) -> str:
        state = "ended" if self._ended else "open" if self._started else "new"
        return f"<{type(self).__name__} {self.id!r} {state}>"

    @property
    def ended(self) -> bool:
        """True once the conversation stopped taking messages."""
        return self._ended

    # -- for subclasses ----------------------------------------------------------------------

    async def _open(self) -> None:
        if self._started:
            raise ProtocolError(f"{self.protocol} conversation {self.id!r} was already started")
        if not self.agent.started:
            await self.agent.start()
        try:
            self.agent.on_conversation(self.id, self._on_message)
        except ValueError:
            raise ProtocolError(
                f"conversation {self.id!r} is already running on agent {self.agent.id!r}: "
                "give each conversation its own id"
            ) from None
        self._started = True

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self.agent.end_conversation(self.id)
            self._changed.set()

    async def _send(
        self,
        performative: Performative,
        receivers: Iterable[str],
        payload: Any = None,
        *,
        expect_answer: bool = True,
        deadline: float | None = None,
        message_id: str | None = None,
        **fields: Any,
    ) -> ACLMessage:
        """Send an act of this conversation; answers to it are then taken from its receivers.

        A caller that must recognise the answers passes ``message_id`` and records it first:
        an answer can arrive before the send returns.
        """
        to = tuple(receivers)
        msg_id = message_id or new_id()
        msg = ACLMessage(
            message_id=msg_id,
            performative=performative,
            sender_id=self.agent.id,
            receiver_id=to[0],
            receivers=to[1:],
            payload=payload,
            correlation_id=self.id,
            protocol=self.protocol,
            reply_with=msg_id,
            reply_by=reply_by(deadline) if deadline is not None else None,
            **fields,
        )
        if expect_answer:
            # Before sending: the answer may arrive before `send` returns.
            self._awaiting[msg_id] = frozenset(to)
        await self.agent.bus.send(msg)
        return msg

    async def _reply(
        self,
        msg: ACLMessage,
        performative: Performative,
        payload: Any,
        *,
        expect_answer: bool = True,
        deadline: float | None = None,
        message_id: str | None = None,
    ) -> ACLMessage:
        """Answer ``msg`` (an accept, a reject); answers to the reply are taken from its sender."""
        msg_id = message_id or new_id()
        reply = msg.reply(
            performative,
            payload,
            message_id=msg_id,
            sender_id=self.agent.id,
            protocol=self.protocol,
            reply_with=msg_id,
            reply_by=reply_by(deadline) if deadline is not None else None,
        )
        if expect_answer:
            self._awaiting[msg_id] = frozenset({msg.sender_id})
        await self.agent.bus.send(reply)
        return reply

    async def _wait(
        self, done: Callable[[], bool], until: float, *, cancellable: bool = True
    ) -> bool:
        """Wait until ``done()`` or the loop time ``until``; return ``done()``.

        Raises:
            ConversationCancelled: The conversation was cancelled meanwhile (``cancellable``).
        """
        loop = asyncio.get_running_loop()
        while True:
            # Cancellation first: cancelling ends the state machines, which may look "done".
            if cancellable and self._cancelled:
                raise ConversationCancelled(self.protocol, self.id)
            if done():
                return True
            left = until - loop.time()
            if left <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), None if math.isinf(left) else left)

    def _take(self, msg: ACLMessage) -> str | None:
        """Apply an answer to ``msg.in_reply_to`` (sent to ``msg.sender_id``) to the state.

        Return None when taken, else why it does not fit (it is answered ``not-understood``).
        """
        raise NotImplementedError

    async def _after_take(self, msg: ACLMessage) -> None:
        """Act on an answer once taken (a contract net rejects a late bid here)."""

    async def _cancel_peers(
        self, peers: Collection[str], deadline: float
    ) -> dict[str, bool | None]:
        """The cancel meta-protocol: cancel to each peer, then its inform-done or failure.

        Returns:
            Per peer: True (``inform`` done), False (``failure`` or ``not-understood``), or
            None (no answer by the deadline). The conversation has ended either way.
        """
        seconds = check_deadline("deadline", deadline)
        if not self._started:
            raise ProtocolError(f"{self.protocol} conversation {self.id!r} was never started")
        if self._ended or self._cancelled:
            return {}
        self._cancelled = True
        self._changed.set()
        until = asyncio.get_running_loop().time() + seconds
        try:
            for peer in peers:
                cancel_id = self._cancel_ids[peer] = new_id()
                await self._send(P.CANCEL, [peer], None, deadline=seconds, message_id=cancel_id)
            pending = set(self._cancel_ids)
            await self._wait(
                lambda: pending <= self._cancel_answers.keys(), until, cancellable=False
            )
        finally:
            self._end()
        return {peer: self._cancel_answers.get(peer) for peer in self._cancel_ids}

    # -- the message path --------------------------------------------------------------------

    async def _on_message(self, msg: ACLMessage) -> None:
        try:
            await self._dispatch(msg)
        except Exception:  # a bug here must not crash the agent's consumer
            log.exception("%s conversation %s: could not handle a message", self.protocol, self.id)
        finally:
            self._changed.set()

    async def _dispatch(self, msg: ACLMessage) -> None:
        key = msg.in_reply_to
        peers = self._awaiting.get(key) if key is not None else None
        if peers is None or msg.sender_id not in peers:
            await self._not_understood(msg, "not a reply to a message of this conversation")
            return
        cancel_id = self._cancel_ids.get(msg.sender_id)
        if cancel_id is not None and key == cancel_id:
            if msg.performative is P.INFORM:
                self._cancel_answers[msg.sender_id] = True
            elif msg.performative in (P.FAILURE, P.NOT_UNDERSTOOD):
                self._cancel_answers[msg.sender_id] = False
            else:
                await self._not_understood(msg, f"{msg.performative.value} does not answer cancel")
            return
        if self._cancelled:
            # An answer that crossed our cancel: the conversation is over for us.
            log.debug("%s %s: dropped a %s after cancel", self.protocol, self.id, msg.performative)
            return
        problem = self._take(msg)
        if problem is not None:
            await self._not_understood(msg, problem)
            return
        await self._after_take(msg)

    async def _not_understood(self, msg: ACLMessage, reason: str) -> None:
        if msg.performative is P.NOT_UNDERSTOOD:
            return  # never answer a not-understood: two agents would loop
        log.info(
            "%s %s: %s from %s not understood: %s",
            self.protocol,
            self.id,
            msg.performative.value,
            msg.sender_id,
            reason,
        )
        await _send_quietly(
            self.agent,
            msg.reply(
                P.NOT_UNDERSTOOD,
                {"reason": reason, "performative": msg.performative.value},
                sender_id=self.agent.id,
            ),
        )


async def _send_quietly(agent: Agent, msg: ACLMessage) -> bool:
    """Send ``msg``; log (not raise) when it cannot be sent. Return whether it was sent."""
    try:
        await agent.bus.send(msg)
    except Exception as exc:
        log.warning(
            "agent %s: could not send %s: %s: %s",
            agent.id,
            msg.performative.value,
            type(exc).__name__,
            redact(str(exc)),
        )
        return False
    return True


@dataclass(slots=True)
class Session:
    """A responder's state for one conversation with one initiator.

    Attributes:
        opening: The message that opened it (request, cfp, subscribe).
        machine: The responder's state machine.
        expects: The id the initiator's next message must reply to (a ``propose``'s id).
        task: The work running for it (the action, the bid), if any.
        timer: Its pending deadline, if any.
        seen: Ids of messages taken, so that a redelivery is not taken twice.
        data: Scratch space of the protocol (a subscription's sequence number).
    """

    opening: ACLMessage
    machine: StateMachine
    expects: str | None = None
    task: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None
    seen: set[str] | None = None
    data: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str]:
        """``(initiator, conversation id)``."""
        return (self.opening.sender_id, self.opening.correlation_id or self.opening.message_id)


class Responder:
    """The responder's side of a protocol on one agent: one `Session` per conversation.

    It registers one handler for every message of its protocol (``agent.on(protocol=...)``)
    and keeps conversations apart by ``(initiator, conversation id)``. A message that opens
    the protocol starts a session; ``cancel`` ends one (answered ``inform`` done, or
    ``failure`` when there is nothing to cancel); anything else is answered ``not-understood``
    unless the protocol's state machine takes it. Long work (an action, a bid) runs in a task
    of its own, so the agent keeps taking messages (cancels among them) meanwhile.

    Register responders before any catch-all handler of the agent: the first matching handler
    takes a message.

    Args:
        agent: The responding agent.
        protocol: The protocol id.
        opening: The acts that open a conversation.
        role: The role's name, for errors and logs.
        transitions: The role's state machine.
        initial: The state a session starts in (before taking the opening act).
    """

    def __init__(
        self,
        agent: Agent,
        protocol: str,
        opening: Collection[Performative],
        *,
        role: str,
        transitions: Transitions,
        initial: str = "idle",
    ) -> None:
        self.agent = agent
        self.protocol = protocol
        self._opening = frozenset(opening)
        self._role = role
        self._transitions = transitions
        self._initial = initial
        self._sessions: dict[tuple[str, str], Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._handler = self._on_message  # one bound method: remove_handler compares by identity
        agent.on(protocol=protocol)(self._handler)
        self._closed = False

    @property
    def sessions(self) -> Mapping[tuple[str, str], Session]:
        """The open conversations, by ``(initiator, conversation id)``."""
        return dict(self._sessions)

    async def close(self) -> None:
        """Stop responding: remove the handler, stop running work, forget every session."""
        if self._closed:
            return
        self._closed = True
        self.agent.remove_handler(self._handler)
        for session in list(self._sessions.values()):
            self._forget(session)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- for subclasses ----------------------------------------------------------------------

    async def _start(self, session: Session) -> None:
        """A session was opened by ``session.opening`` (already taken by its machine)."""
        raise NotImplementedError

    async def _continue(self, session: Session, msg: ACLMessage) -> str | None:
        """Take a later message of an open session; return why it does not fit, or None."""
        return f"{msg.performative.value} is not expected in state {session.machine.state!r}"

    async def _on_cancel(self, session: Session) -> None:
        """A session is being cancelled (its task is already cancelled)."""

    def _spawn(self, session: Session, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)
        session.task = task
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error(
                "%s %s on agent %s: work failed: %s: %s",
                self.protocol,
                self._role,
                self.agent.id,
                type(exc).__name__,
                redact(str(exc)),
            )

    def _forget(self, session: Session) -> None:
        if self._sessions.get(session.key) is session:
            del self._sessions[session.key]
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None

    async def _answer(
        self,
        session: Session,
        to: ACLMessage,
        performative: Performative,
        payload: Any,
        **fields: Any,
    ) -> ACLMessage | None:
        """Send a reply that the session's machine allows; end the session if it is final.

        Returns:
            The reply, or None if the state machine does not allow it now (nothing is sent).
        """
        if not session.machine.allows("out", performative):
            log.debug("%s: not sending %s in %s", self.protocol, performative, session.machine)
            return None
        session.machine.send(performative)
        reply = to.reply(performative, payload, sender_id=self.agent.id, **fields)
        if session.machine.done:
            self._forget(session)
        await _send_quietly(self.agent, reply)
        return reply

    async def _not_understood(self, msg: ACLMessage, reason: str) -> None:
        if msg.performative is P.NOT_UNDERSTOOD:
            return
        log.info(
            "%s %s on agent %s: %s from %s not understood: %s",
            self.protocol,
            self._role,
            self.agent.id,
            msg.performative.value,
            msg.sender_id,
            reason,
        )
        await _send_quietly(
            self.agent,
            msg.reply(
                P.NOT_UNDERSTOOD,
                {"reason": reason, "performative": msg.performative.value},
                sender_id=self.agent.id,
            ),
        )

    # -- the message path --------------------------------------------------------------------

    async def _on_message(self, msg: ACLMessage) -> None:
        try:
            await self._dispatch(msg)
        except Exception:  # a bug here must not crash the agent's consumer
            log.exception("%s %s on agent %s failed", self.protocol, self._role, self.agent.id)

    async def _dispatch(self, msg: ACLMessage) -> None:
        if self._closed:
            await self._not_understood(msg, f"agent no longer speaks {self.protocol}")
            return
        if msg.correlation_id is None:
            await self._not_understood(msg, "a message of this protocol needs a conversation id")
            return
        session = self._sessions.get((msg.sender_id, msg.correlation_id))
        if session is not None and session.seen is not None and msg.message_id in session.seen:
            return  # a redelivery of a message already taken
        if msg.performative is P.CANCEL:
            await self._cancel(session, msg)
            return
        if session is None:
            if msg.performative in self._opening:
                await self._open(msg)
            else:
                await self._not_understood(msg, "no such conversation")
            return
        problem = await self._continue(session, msg)
        if problem is not None:
            await self._not_understood(msg, problem)
        elif session.seen is not None:
            session.seen.add(msg.message_id)

    async def _open(self, msg: ACLMessage) -> None:
        machine = StateMachine(self.protocol, self._role, self._transitions, self._initial)
        machine.receive(msg.performative)
        session = Session(msg, machine, seen={msg.message_id}, data={})
        self._sessions[session.key] = session
        await self._start(session)

    async def _cancel(self, session: Session | None, msg: ACLMessage) -> None:
        if session is None:
            await _send_quietly(
                self.agent,
                msg.reply(P.FAILURE, {"reason": "no-such-conversation"}, sender_id=self.agent.id),
            )
            return
        self._forget(session)
        session.machine.finish("cancelled")
        if session.task is not None and not session.task.done():
            session.task.cancel()
        await self._on_cancel(session)
        await _send_quietly(
            self.agent, msg.reply(P.INFORM, {"cancelled": True}, sender_id=self.agent.id)
        )


def timeout_error(conversation: Conversation, step: str, seconds: float) -> ProtocolTimeout:
    """The `ProtocolTimeout` of ``step``, after ending the conversation."""
    conversation._end()
    return ProtocolTimeout(conversation.protocol, step, conversation.id, seconds)
