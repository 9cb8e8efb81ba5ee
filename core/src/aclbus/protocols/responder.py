"""The responder's side of a protocol: `Responder`, with one `Session` per conversation.

Messages are matched strictly: a session is found by ``(initiator, conversation id)``, and
anything its state machine does not take is answered ``not-understood`` (never a
``not-understood`` itself) and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aclbus.acl import ACLMessage, Performative
from aclbus.dlq import redact
from aclbus.protocols.machine import StateMachine, Transitions
from aclbus.protocols.sending import send_quietly

if TYPE_CHECKING:
    from aclbus.agent import Agent

__all__ = ["Responder", "Session"]

log = logging.getLogger("aclbus.protocols")

P = Performative


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
        await send_quietly(self.agent, reply)
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
        await send_quietly(
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
            await send_quietly(
                self.agent,
                msg.reply(P.FAILURE, {"reason": "no-such-conversation"}, sender_id=self.agent.id),
            )
            return
        self._forget(session)
        session.machine.finish("cancelled")
        if session.task is not None and not session.task.done():
            session.task.cancel()
        await self._on_cancel(session)
        await send_quietly(
            self.agent, msg.reply(P.INFORM, {"cancelled": True}, sender_id=self.agent.id)
        )
