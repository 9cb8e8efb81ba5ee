"""The initiator's side of every FIPA protocol: `Conversation`, its `Outcome`, the protocol ids.

A `Conversation` drives one conversation: a `StateMachine` per peer and a deadline per step
(`check_deadline`). The responder's side is `Responder`.

Messages of a conversation are matched strictly: on the conversation id (``correlation_id``)
and on ``in_reply_to``, which must name a message this side sent to that peer. Anything else
is answered ``not-understood`` (never a ``not-understood`` itself) and leaves the state as it
was: a stray or malicious message cannot move a conversation, nor crash the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from aclbus._internal.uuid7 import new_id
from aclbus.acl import ACLMessage, Performative
from aclbus.errors import ConfigurationError

# Re-exported: it was importable from here before the protocols were split into modules.
from aclbus.protocols.callbacks import error_payload as error_payload
from aclbus.protocols.deadlines import MAX_DEADLINE, check_deadline, reply_by
from aclbus.protocols.errors import ConversationCancelled, ProtocolError, ProtocolTimeout
from aclbus.protocols.machine import Direction, StateMachine, Transitions
from aclbus.protocols.responder import Responder
from aclbus.protocols.sending import send_quietly
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

log = logging.getLogger("aclbus.protocols")

P = Performative


# Fields the protocol sets itself: a caller passing them would break the matching.
_PROTOCOL_FIELDS: Final = frozenset(
    {
        "message_id",
        "performative",
        "sender_id",
        "receiver_id",
        "receivers",
        "payload",
        "correlation_id",
        "protocol",
        "reply_with",
        "in_reply_to",
        "reply_by",
    }
)


def check_fields(fields: Collection[str]) -> None:
    """Refuse message fields that a protocol sets itself.

    Raises:
        ConfigurationError: One of ``fields`` is set by the protocol.
    """
    taken = sorted(_PROTOCOL_FIELDS.intersection(fields))
    if taken:
        raise ConfigurationError(
            f"{', '.join(taken)} cannot be passed: the protocol sets these fields itself"
        )


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

    def _timed_out(self, step: str, seconds: float) -> ProtocolTimeout:
        """End the conversation; return the `ProtocolTimeout` of ``step`` to raise."""
        self._end()
        return ProtocolTimeout(self.protocol, step, self.id, seconds)

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
        await send_quietly(
            self.agent,
            msg.reply(
                P.NOT_UNDERSTOOD,
                {"reason": reason, "performative": msg.performative.value},
                sender_id=self.agent.id,
            ),
        )
