"""The errors of the FIPA interaction protocols, all under `ProtocolError`.

An initiator raises them when a conversation does not end in success; a responder's callback
raises `Refused` (or `ProtocolFailure`) to answer ``refuse`` (or ``failure``) with a reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aclbus.errors import ACLBusError

if TYPE_CHECKING:
    from aclbus.acl import ACLMessage

__all__ = [
    "ConversationCancelled",
    "InvalidDeadline",
    "NotUnderstood",
    "OutOfSequence",
    "ProtocolError",
    "ProtocolFailure",
    "ProtocolTimeout",
    "Refused",
    "SequenceGap",
]


def _reason_of(message: ACLMessage | None) -> str | None:
    payload = message.payload if message is not None else None
    if isinstance(payload, dict):
        reason = payload.get("reason")
        return str(reason) if reason is not None else None
    return str(payload) if isinstance(payload, str) else None


class ProtocolError(ACLBusError):
    """A FIPA interaction protocol did not run to a successful end."""


class InvalidDeadline(ProtocolError, ValueError):
    """A deadline that is not a finite number of seconds above 0.

    Attributes:
        name: The parameter (``"deadline"``, ``"result_deadline"``).
        value: The offending value.
    """

    def __init__(self, name: str, value: object) -> None:
        self.name = name
        self.value = value
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        super().__init__(f"{name} must be a finite number of seconds above 0, got {shown}")


class Refused(ProtocolError):
    """A ``refuse``: the responder will not do what was asked.

    A responder's callback raises it to refuse (``raise Refused("busy")``); an initiator gets
    it when its peer refused.

    Attributes:
        reason: Why, as the refusing agent put it.
        peer: The agent that refused (None when raised by a responder's callback).
        message: The ``refuse`` message received (None when raised by a callback).
    """

    def __init__(
        self,
        reason: str | None = None,
        *,
        peer: str | None = None,
        message: ACLMessage | None = None,
    ) -> None:
        self.reason = reason if reason is not None else _reason_of(message)
        self.peer = peer
        self.message = message
        who = f"agent {peer!r}" if peer else "the responder"
        super().__init__(f"{who} refused" + (f": {self.reason}" if self.reason else ""))


class ProtocolFailure(ProtocolError):
    """A ``failure``: the responder tried and could not do it (or a subscription broke off).

    A responder's callback raises it to answer ``failure`` with its own reason; any other
    exception of a callback is answered ``failure`` with reason ``"error"``.

    Attributes:
        reason: Why, as the failing agent put it.
        peer: The agent that failed (None when raised by a responder's callback).
        message: The ``failure`` message received (None when raised by a callback).
    """

    def __init__(
        self,
        reason: str | None = None,
        *,
        peer: str | None = None,
        message: ACLMessage | None = None,
    ) -> None:
        self.reason = reason if reason is not None else _reason_of(message)
        self.peer = peer
        self.message = message
        who = f"agent {peer!r}" if peer else "the responder"
        super().__init__(f"{who} failed" + (f": {self.reason}" if self.reason else ""))


class NotUnderstood(ProtocolError):
    """The peer answered ``not-understood``: it does not take part in this protocol.

    Attributes:
        peer: The agent that did not understand.
        message: The ``not-understood`` message.
    """

    def __init__(self, peer: str, message: ACLMessage) -> None:
        self.peer = peer
        self.message = message
        reason = _reason_of(message)
        super().__init__(f"agent {peer!r} did not understand" + (f": {reason}" if reason else ""))


class ProtocolTimeout(ProtocolError, TimeoutError):
    """A step of a conversation got no answer by its deadline.

    Attributes:
        protocol: The protocol id (``"fipa-request"``).
        step: The step that ran out of time (``"response"``, ``"result"``, ``"agree"``,
            ``"cancel"``).
        conversation_id: The conversation.
        seconds: The step's deadline, in seconds.
    """

    def __init__(self, protocol: str, step: str, conversation_id: str, seconds: float) -> None:
        self.protocol = protocol
        self.step = step
        self.conversation_id = conversation_id
        self.seconds = seconds
        super().__init__(
            f"{protocol} conversation {conversation_id!r}: no {step} within {seconds:g} s"
        )


class ConversationCancelled(ProtocolError):
    """The conversation was cancelled (by `cancel`) before it had an outcome."""

    def __init__(self, protocol: str, conversation_id: str) -> None:
        self.protocol = protocol
        self.conversation_id = conversation_id
        super().__init__(f"{protocol} conversation {conversation_id!r} was cancelled")


class OutOfSequence(ProtocolError):
    """A message that the protocol does not allow in the conversation's current state.

    Attributes:
        state: The state the role was in.
        event: What happened (``"receive agree"``, ``"send inform"``).
    """

    def __init__(self, protocol: str, role: str, state: str, event: str) -> None:
        self.state = state
        self.event = event
        super().__init__(f"{protocol} {role}: cannot {event} in state {state!r}")


class SequenceGap(ProtocolError):
    """Subscription informs were missing for longer than the gap timeout; they were skipped.

    Attributes:
        missing: The sequence numbers given up on, first and last (inclusive).
    """

    def __init__(self, conversation_id: str, first: int, last: int) -> None:
        self.missing = (first, last)
        span = str(first) if first == last else f"{first}-{last}"
        super().__init__(
            f"subscription {conversation_id!r}: inform(s) {span} never arrived; skipped"
        )
