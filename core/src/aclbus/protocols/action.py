"""Ask-and-answer protocols, Request and Query: one initiator and one participant for both.

The initiator sends one act (``request``, ``query-if``, ``query-ref``) and takes
``refuse`` | (``agree`` →) the result | ``failure``, with a deadline for the first answer
and one for the result after an ``agree``. The participant decides, may agree, then
performs. `aclbus.protocols.request` and `aclbus.protocols.query` give them their acts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any, ClassVar

from aclbus._internal.uuid7 import new_id
from aclbus.acl import ACLMessage, Performative
from aclbus.protocols.callbacks import error_payload, resolve
from aclbus.protocols.conversation import Conversation, Outcome, check_fields
from aclbus.protocols.deadlines import check_deadline
from aclbus.protocols.errors import (
    ConversationCancelled,
    NotUnderstood,
    ProtocolError,
    ProtocolFailure,
    ProtocolTimeout,
    Refused,
)
from aclbus.protocols.machine import StateMachine, Transitions
from aclbus.protocols.responder import Responder, Session
from aclbus.subjects import validate_id

if TYPE_CHECKING:
    from aclbus.agent import Agent

__all__ = ["ActionInitiator", "ActionResponder", "Perform"]

P = Performative

Perform = Callable[[ACLMessage], Any | Awaitable[Any]]
"""``perform(msg)``, plain or async: returns the result's payload, raises to refuse or fail."""


class ActionInitiator(Conversation):
    """An initiator of an ask-and-answer protocol: Request or Query."""

    _protocol: ClassVar[str]
    _transitions: ClassVar[Transitions]
    _initial: ClassVar[str]

    def __init__(
        self,
        agent: Agent,
        act: Performative,
        receiver: str,
        payload: Any,
        *,
        deadline: float,
        result_deadline: float | None,
        conversation_id: str | None,
        fields: dict[str, Any],
    ) -> None:
        super().__init__(agent, self._protocol, conversation_id)
        self.receiver = validate_id(receiver, "receiver id")
        self.deadline = check_deadline("deadline", deadline)
        self.result_deadline = (
            self.deadline
            if result_deadline is None
            else check_deadline("result_deadline", result_deadline)
        )
        check_fields(fields)
        self.machine = StateMachine(self._protocol, "initiator", self._transitions, self._initial)
        self._act = act
        self._payload = payload
        self._fields = fields
        self._opening_id: str | None = None
        self._sent_at = 0.0
        self._agreed_at: float | None = None
        self._last: ACLMessage | None = None
        self._error: ProtocolError | None = None

    @property
    def state(self) -> str:
        """The initiator's state (``"requested"``, ``"agreed"``, ``"done"``, ...)."""
        return self.machine.state

    async def start(self) -> ACLMessage:
        """Send the opening act to the receiver; return it.

        Raises:
            ProtocolError: The conversation was already started.
        """
        await self._open()
        self._sent_at = asyncio.get_running_loop().time()
        self._opening_id = new_id()
        try:
            return await self._send(
                self._act,
                [self.receiver],
                self._payload,
                deadline=self.deadline,
                message_id=self._opening_id,
                **self._fields,
            )
        except BaseException:
            self._end()
            raise

    async def result(self) -> Outcome:
        """Wait for the outcome.

        Returns:
            The result (``inform``), and whether the receiver agreed first.

        Raises:
            Refused: The receiver refused.
            ProtocolFailure: The receiver answered ``failure``.
            NotUnderstood: The receiver does not speak this protocol.
            ProtocolTimeout: No answer by ``deadline`` (step ``"response"``), or no result by
                ``result_deadline`` after ``agree`` (step ``"result"``).
            ConversationCancelled: The conversation was cancelled first.
            ProtocolError: It was never started.
        """
        if self._opening_id is None:
            raise ProtocolError(f"{self.protocol} {self.id!r}: call start() before result()")
        if self._error is None and not self.machine.done:
            try:
                await self._run_steps()
            except ProtocolError as exc:
                self._error = exc
        if self._error is not None:
            raise self._error
        return self._outcome()

    async def _run_steps(self) -> None:
        answered = await self._wait(
            lambda: self.machine.state != self._initial, self._sent_at + self.deadline
        )
        if not answered:
            self.machine.finish("timed-out")
            raise self._timed_out("response", self.deadline)
        if self._agreed_at is not None and not self.machine.done:
            done = await self._wait(
                lambda: self.machine.done, self._agreed_at + self.result_deadline
            )
            if not done:
                self.machine.finish("timed-out")
                raise self._timed_out("result", self.result_deadline)

    def _outcome(self) -> Outcome:
        last = self._last
        state = self.machine.state
        if state == "cancelled" or last is None:
            raise ConversationCancelled(self.protocol, self.id)
        if state == "refused":
            raise Refused(peer=last.sender_id, message=last)
        if state == "failed":
            raise ProtocolFailure(peer=last.sender_id, message=last)
        if state == "not-understood":
            raise NotUnderstood(last.sender_id, last)
        return Outcome(self.id, last.sender_id, self._agreed_at is not None, last)

    async def run(self) -> Outcome:
        """`start`, then `result`."""
        await self.start()
        return await self.result()

    async def cancel(self, *, deadline: float = 1.0) -> bool:
        """Cancel the conversation (FIPA cancel): the receiver stops and confirms.

        Args:
            deadline: Seconds to wait for the receiver's answer to the ``cancel``.

        Returns:
            True when the receiver confirmed (``inform``); False when it answered ``failure``
            (nothing left to cancel) or the conversation had already ended.

        Raises:
            ProtocolTimeout: No answer to the cancel by ``deadline`` (step ``"cancel"``).
            InvalidDeadline: ``deadline`` is not a positive number of seconds.
            ProtocolError: The conversation was never started.
        """
        seconds = check_deadline("deadline", deadline)
        if self.ended or self.machine.done:
            return False
        self.machine.finish("cancelled")
        answers = await self._cancel_peers([self.receiver], seconds)
        answer = answers.get(self.receiver)
        if answer is None:
            raise ProtocolTimeout(self.protocol, "cancel", self.id, seconds)
        return answer

    def _take(self, msg: ACLMessage) -> str | None:
        if msg.in_reply_to != self._opening_id:
            return "not a reply to the conversation's opening message"
        if not self.machine.allows("in", msg.performative):
            return f"{msg.performative.value} is not expected in state {self.machine.state!r}"
        self.machine.receive(msg.performative)
        if msg.performative is P.AGREE:
            self._agreed_at = asyncio.get_running_loop().time()
        else:
            self._last = msg
        if self.machine.done:
            self._end()
        return None


class ActionResponder(Responder):
    """A participant of an ask-and-answer protocol: Request or Query."""

    def __init__(
        self,
        agent: Agent,
        perform: Perform,
        *,
        protocol: str,
        opening: Collection[Performative],
        transitions: Transitions,
        decide: Perform | None,
        agree: bool,
        timeout: float | None,
    ) -> None:
        if not callable(perform) or (decide is not None and not callable(decide)):
            raise TypeError("perform and decide must be callables taking the message")
        self._perform = perform
        self._decide = decide
        self._agree = agree
        self.timeout = None if timeout is None else check_deadline("timeout", timeout)
        super().__init__(agent, protocol, opening, role="participant", transitions=transitions)

    async def _start(self, session: Session) -> None:
        self._spawn(session, self._act(session))

    async def _act(self, session: Session) -> None:
        msg = session.opening
        if self._decide is not None:
            try:
                await resolve(self._decide, msg)
            except Exception as exc:
                await self._answer(session, msg, P.REFUSE, error_payload(exc))
                return
        if self._agree:
            await self._answer(session, msg, P.AGREE, None)
        try:
            work = resolve(self._perform, msg)
            result = await (work if self.timeout is None else asyncio.wait_for(work, self.timeout))
        except Refused as exc:
            act = P.REFUSE if session.machine.allows("out", P.REFUSE) else P.FAILURE
            await self._answer(session, msg, act, error_payload(exc))
        except Exception as exc:
            await self._answer(session, msg, P.FAILURE, error_payload(exc))
        else:
            await self._answer(session, msg, P.INFORM, result)
