"""FIPA Subscribe (SC00035): be told, in order, whenever something changes.

``subscribe`` → ``refuse`` | ``agree``, then ``inform`` after ``inform`` until the subscriber
sends ``cancel`` (answered ``inform`` done) or the publisher ends it with ``failure``.

Every ``inform`` (and a final ``failure``) carries its place in the subscription in the header
`SEQUENCE_HEADER` (1, 2, 3, ...). The subscriber hands the informs over in that order, holds
back one that arrives early until the ones before it came, drops a repeat, and gives up on a
missing one after ``gap_timeout`` (raising `SequenceGap` once, then going on).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from aclbus._internal.uuid7 import new_id
from aclbus.acl import ACLMessage, Performative
from aclbus.protocols.callbacks import error_payload, resolve
from aclbus.protocols.conversation import FIPA_SUBSCRIBE, Conversation, check_fields
from aclbus.protocols.deadlines import check_deadline
from aclbus.protocols.errors import (
    ConversationCancelled,
    NotUnderstood,
    ProtocolError,
    ProtocolFailure,
    ProtocolTimeout,
    Refused,
    SequenceGap,
)
from aclbus.protocols.machine import StateMachine, Transitions
from aclbus.protocols.responder import Responder, Session
from aclbus.subjects import validate_id

if TYPE_CHECKING:
    from aclbus.agent import Agent

__all__ = [
    "SEQUENCE_HEADER",
    "SUBSCRIBE_INITIATOR",
    "SUBSCRIBE_PARTICIPANT",
    "FipaSubscription",
    "SubscribePublisher",
    "subscribe",
]

P = Performative

SEQUENCE_HEADER: Final = "fipa-sequence"
"""The application header holding an inform's place in its subscription, from 1."""

SUBSCRIBE_INITIATOR: Final[Transitions] = {
    "subscribing": {
        ("in", P.AGREE): "active",
        ("in", P.REFUSE): "refused",
        ("in", P.INFORM): "active",  # agree is implied by the first inform
        ("in", P.FAILURE): "failed",
        ("in", P.NOT_UNDERSTOOD): "not-understood",
    },
    "active": {("in", P.INFORM): "active", ("in", P.FAILURE): "failed"},
}
"""The subscriber, from ``"subscribing"``."""

SUBSCRIBE_PARTICIPANT: Final[Transitions] = {
    "idle": {("in", P.SUBSCRIBE): "received"},
    "received": {("out", P.AGREE): "active", ("out", P.REFUSE): "refused"},
    "active": {("out", P.INFORM): "active", ("out", P.FAILURE): "failed"},
}
"""The publisher, per subscriber, from ``"idle"``."""


class FipaSubscription(Conversation):
    """The subscriber's side of one FIPA Subscribe: an async iterator of ordered informs.

    Make it with `subscribe` (which waits for the publisher's ``agree``), or build it and
    ``await sub.start()``. Iterate it (``async for inform in sub``) or call `next`; the
    iteration ends after `cancel`, and raises `ProtocolFailure` when the publisher ends the
    subscription. As an async context manager it cancels on exit.

    Args:
        agent: The subscribing agent (started here if it is not running).
        publisher: The agent subscribed to.
        payload: What to be told about.
        deadline: Seconds for the ``agree`` (or ``refuse``): the subscribe's ``reply_by``.
        gap_timeout: Seconds to wait for a missing inform before skipping it.
        max_pending: Informs held back waiting for a missing one, at most; more skips it.
        conversation_id: The conversation's id; None makes a new one.
        **fields: Other fields of the subscribe (``message_type``, ``ontology``).

    Raises:
        InvalidIdentifier: ``publisher`` or ``conversation_id`` is not a valid id.
        InvalidDeadline: A deadline is not a positive, finite number of seconds.
        ConfigurationError: ``fields`` sets a field the protocol sets itself.
    """

    def __init__(
        self,
        agent: Agent,
        publisher: str,
        payload: Any = None,
        *,
        deadline: float,
        gap_timeout: float = 5.0,
        max_pending: int = 10_000,
        conversation_id: str | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(agent, FIPA_SUBSCRIBE, conversation_id)
        self.publisher = validate_id(publisher, "publisher id")
        self.deadline = check_deadline("deadline", deadline)
        self.gap_timeout = check_deadline("gap_timeout", gap_timeout)
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(f"max_pending must be an int of at least 1, not {max_pending!r}")
        self.max_pending = max_pending
        check_fields(fields)
        self.machine = StateMachine(FIPA_SUBSCRIBE, "initiator", SUBSCRIBE_INITIATOR, "subscribing")
        self._payload = payload
        self._fields = fields
        self._opening_id: str | None = None
        self._next_seq = 1
        self._held: dict[int, ACLMessage] = {}
        self._gap_since = 0.0
        self._ready: deque[ACLMessage] = deque()
        self._last: ACLMessage | None = None  # the message that ended it

    @property
    def state(self) -> str:
        """``"subscribing"``, ``"active"``, or how it ended."""
        return self.machine.state

    @property
    def active(self) -> bool:
        """True while informs may still come."""
        return self.machine.state == "active" and not self.ended

    async def start(self) -> ACLMessage:
        """Send the subscribe, and wait for the publisher's agreement; return the subscribe.

        Raises:
            Refused: The publisher refused.
            NotUnderstood: The publisher does not speak FIPA Subscribe.
            ProtocolFailure: The publisher answered ``failure``.
            ProtocolTimeout: No answer by ``deadline`` (step ``"agree"``).
            ProtocolError: It was already started.
        """
        await self._open()
        until = asyncio.get_running_loop().time() + self.deadline
        self._opening_id = new_id()
        try:
            sent = await self._send(
                P.SUBSCRIBE,
                [self.publisher],
                self._payload,
                deadline=self.deadline,
                message_id=self._opening_id,
                **self._fields,
            )
        except BaseException:
            self._end()
            raise
        if not await self._wait(lambda: self.machine.state != "subscribing", until):
            self.machine.finish("timed-out")
            raise self._timed_out("agree", self.deadline)
        if self.machine.state != "active":
            raise self._ending_error()
        return sent

    def _ending_error(self) -> ProtocolError:
        last = self._last
        state = self.machine.state
        if last is None or state == "cancelled":
            return ConversationCancelled(self.protocol, self.id)
        if state == "refused":
            return Refused(peer=last.sender_id, message=last)
        if state == "not-understood":
            return NotUnderstood(last.sender_id, last)
        return ProtocolFailure(peer=last.sender_id, message=last)

    async def next(self, timeout: float | None = None) -> ACLMessage:
        """The next inform, in the publisher's order.

        Args:
            timeout: Seconds to wait at most; None: until one comes or the subscription ends.

        Raises:
            ProtocolTimeout: None came within ``timeout`` (step ``"inform"``).
            SequenceGap: An inform was missing for ``gap_timeout``; it is skipped, and the
                next call goes on with the ones after it.
            ProtocolFailure: The publisher ended the subscription with ``failure``.
            ConversationCancelled: The subscription was cancelled.
        """
        loop = asyncio.get_running_loop()
        until = math.inf if timeout is None else loop.time() + check_deadline("timeout", timeout)
        while True:
            if self._ready:
                return self._ready.popleft()
            if self.machine.done or self.machine.state == "cancelled" or self.ended:
                raise self._ending_error()
            if self._held:
                gap_until = self._gap_since + self.gap_timeout
                if loop.time() >= gap_until:
                    raise self._skip_gap()
                await self._wait(lambda: bool(self._ready) or self.ended, min(until, gap_until))
            else:
                await self._wait(lambda: bool(self._ready or self._held) or self.ended, until)
            if not self._ready and loop.time() >= until:
                raise ProtocolTimeout(self.protocol, "inform", self.id, timeout or 0.0)

    def _skip_gap(self) -> SequenceGap:
        first = self._next_seq
        self._next_seq = min(self._held)
        gap = SequenceGap(self.id, first, self._next_seq - 1)
        self._drain()
        return gap

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ACLMessage:
        try:
            return await self.next()
        except ConversationCancelled:
            raise StopAsyncIteration from None

    async def cancel(self, *, deadline: float = 1.0) -> bool:
        """End the subscription (FIPA cancel); the publisher confirms with ``inform``.

        Args:
            deadline: Seconds to wait for the publisher's answer.

        Returns:
            True when the publisher confirmed; False when it answered ``failure`` or the
            subscription had already ended.

        Raises:
            ProtocolTimeout: No answer by ``deadline`` (step ``"cancel"``).
            InvalidDeadline: ``deadline`` is not a positive number of seconds.
            ProtocolError: It was never started.
        """
        seconds = check_deadline("deadline", deadline)
        if self.ended or self.machine.done:
            return False
        self.machine.finish("cancelled")
        answer = (await self._cancel_peers([self.publisher], seconds)).get(self.publisher)
        if answer is None:
            raise ProtocolTimeout(self.protocol, "cancel", self.id, seconds)
        return answer

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._opening_id is not None:
            with contextlib.suppress(ProtocolTimeout):  # ended on our side all the same
                await self.cancel()

    def _take(self, msg: ACLMessage) -> str | None:
        if msg.in_reply_to != self._opening_id:
            return "not a reply to the subscribe of this conversation"
        act = msg.performative
        if not self.machine.allows("in", act):
            return f"{act.value} is not expected in state {self.machine.state!r}"
        seq_text = msg.headers.get(SEQUENCE_HEADER)
        if seq_text is None or act not in (P.INFORM, P.FAILURE):
            self._apply(msg)
            return None
        try:
            seq = int(seq_text)
        except ValueError:
            return f"header {SEQUENCE_HEADER} must be a whole number, not {seq_text!r}"
        if seq < 1:
            return f"header {SEQUENCE_HEADER} must be at least 1, not {seq}"
        if seq < self._next_seq or seq in self._held:
            return None  # a repeat: taken already
        if not self._held:
            self._gap_since = asyncio.get_running_loop().time()
        self._held[seq] = msg
        self._drain()
        if len(self._held) > self.max_pending:
            self._skip_gap()
        return None

    def _drain(self) -> None:
        while self._next_seq in self._held:
            msg = self._held.pop(self._next_seq)
            self._next_seq += 1
            if self.machine.allows("in", msg.performative):
                self._apply(msg)
        if self._held:
            self._gap_since = asyncio.get_running_loop().time()

    def _apply(self, msg: ACLMessage) -> None:
        self.machine.receive(msg.performative)
        if msg.performative is P.INFORM:
            self._ready.append(msg)
        elif msg.performative is not P.AGREE:
            self._last = msg
        if self.machine.done:
            self._end()


async def subscribe(
    agent: Agent,
    publisher: str,
    payload: Any = None,
    *,
    deadline: float,
    gap_timeout: float = 5.0,
    **fields: Any,
) -> FipaSubscription:
    """Subscribe to ``publisher`` and wait for its ``agree``; see `FipaSubscription`.

    Example:
        ```python
        async with await subscribe(agent, "prices", {"sku": "A1"}, deadline=1.0) as sub:
            async for inform in sub:
                print(inform.payload)
        ```
    """
    sub = FipaSubscription(
        agent, publisher, payload, deadline=deadline, gap_timeout=gap_timeout, **fields
    )
    await sub.start()
    return sub


OnSubscribe = Callable[[ACLMessage], Any | Awaitable[Any]]
"""``on_subscribe(msg)``, plain or async: raise `Refused` to refuse the subscription."""


class SubscribePublisher(Responder):
    """The publisher of FIPA Subscribe on an agent: keeps subscribers, informs them in order.

    Each ``subscribe`` is passed to ``on_subscribe`` (which raises `Refused` to refuse; any
    other exception refuses too) and otherwise answered ``agree``. `notify` sends an
    ``inform`` to every subscriber, numbered per subscription; a subscriber's ``cancel``
    removes it (answered ``inform``); `close` ends every subscription with ``failure``.

    Args:
        agent: The publishing agent.
        on_subscribe: ``on_subscribe(msg)``; None: accept every subscription.

    Raises:
        TypeError: ``on_subscribe`` is not callable.
    """

    def __init__(self, agent: Agent, on_subscribe: OnSubscribe | None = None) -> None:
        if on_subscribe is not None and not callable(on_subscribe):
            raise TypeError(f"on_subscribe must be callable, not {on_subscribe!r}")
        self._on_subscribe = on_subscribe
        # One sender at a time: informs leave in their numbered order, after the agree.
        self._lock = asyncio.Lock()
        super().__init__(
            agent,
            FIPA_SUBSCRIBE,
            (P.SUBSCRIBE,),
            role="publisher",
            transitions=SUBSCRIBE_PARTICIPANT,
        )

    @property
    def subscribers(self) -> tuple[ACLMessage, ...]:
        """The ``subscribe`` message of each active subscription."""
        return tuple(s.opening for s in self._active())

    def _active(self) -> list[Session]:
        return [s for s in self._sessions.values() if s.machine.state == "active"]

    async def _start(self, session: Session) -> None:
        msg = session.opening
        async with self._lock:
            if self._on_subscribe is not None:
                try:
                    await resolve(self._on_subscribe, msg)
                except Exception as exc:
                    await self._answer(session, msg, P.REFUSE, error_payload(exc))
                    return
            assert session.data is not None
            session.data["seq"] = 0
            await self._answer(session, msg, P.AGREE, None)

    async def notify(
        self,
        payload: Any,
        *,
        where: Callable[[ACLMessage], bool] | None = None,
        **fields: Any,
    ) -> int:
        """Inform every subscriber (or those whose ``subscribe`` passes ``where``).

        Args:
            payload: The news.
            where: A predicate on a subscription's ``subscribe`` message; None: all.
            **fields: Other fields of the informs (``message_type``, ``headers``).

        Returns:
            How many subscribers were informed.
        """
        async with self._lock:
            informed = 0
            for session in self._active():
                if where is not None and not where(session.opening):
                    continue
                await self._numbered(session, P.INFORM, payload, fields)
                informed += 1
            return informed

    async def end(self, subscriber: str, conversation_id: str, reason: str = "ended") -> bool:
        """End one subscription with ``failure`` (``{"reason": reason}``).

        Returns:
            Whether there was such an active subscription.
        """
        async with self._lock:
            session = self._sessions.get((subscriber, conversation_id))
            if session is None or session.machine.state != "active":
                return False
            await self._numbered(session, P.FAILURE, {"reason": reason}, {})
            return True

    async def close(self, reason: str = "closed") -> None:
        """End every subscription with ``failure`` (``{"reason": reason}``), stop publishing."""
        async with self._lock:
            for session in self._active():
                await self._numbered(session, P.FAILURE, {"reason": reason}, {})
        await super().close()

    async def _numbered(
        self, session: Session, act: Performative, payload: Any, fields: dict[str, Any]
    ) -> None:
        assert session.data is not None
        seq = session.data["seq"] = session.data["seq"] + 1
        values = dict(fields)
        headers = {**values.pop("headers", {}), SEQUENCE_HEADER: str(seq)}
        await self._answer(session, session.opening, act, payload, headers=headers, **values)
