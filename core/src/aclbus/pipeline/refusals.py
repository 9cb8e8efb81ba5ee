"""Answering a delivery that is not a valid message with ``not-understood``, where it is safe.

FIPA's answer to a message one cannot understand. A message that could not be decoded has no
`aclbus.ACLMessage` to reply to, so the answer is built from its headers, as far as they can
be read; `refusal_answer` says who gets one and who does not.
"""

from __future__ import annotations

from collections.abc import Mapping

from aclbus import wire
from aclbus.acl import ACLMessage, Performative
from aclbus.backend import Received
from aclbus.errors import ACLDecodeError, InvalidIdentifier, MalformedHeaders
from aclbus.redaction import redact
from aclbus.subjects import Subjects, validate_id

__all__ = ["refusal_answer"]

_NOT_UNDERSTOOD = wire.CE_TYPE_PREFIX + Performative.NOT_UNDERSTOOD.value


def refusal_answer(
    received: Received, agent_id: str, exc: ACLDecodeError, subjects: Subjects
) -> ACLMessage | None:
    """The ``not-understood`` that answers an undecodable delivery, or None: no answer.

    Its payload is ``{"reason", "field", "message_id"}``, and it quotes the message's id
    (``in_reply_to``, ``caused_by``) and conversation as far as the headers can be read. Never
    answered: a broadcast, group or topic message (one bad broadcast would make every agent
    answer its sender), nor a message that says it is a not-understood itself, whatever else
    is wrong with it (two agents that cannot read each other would answer each other
    forever). It goes to the request's reply subject if there is one, else to the inbox of
    ``acl-reply-to`` or ``ce-source`` if that is an id, the answer's receiver either way. A
    message whose header block is malformed is answered on its reply subject only, with no
    receiver: its headers may name an agent that did not send it (a second ``ce-source``),
    which must not be sent answers to messages it never sent.

    Raises:
        ValidationError: The answer cannot be built from what the headers say.
    """
    if subjects.reaches_many(received.subject):
        return None
    headers = _all_values(received.headers)
    if any(value.strip(" \t") == _NOT_UNDERSTOOD for value in headers.get("ce-type", ())):
        return None
    receiver = None
    if not isinstance(exc, MalformedHeaders):  # else who sent it is what is not known
        receiver = _one_id(headers, "acl-reply-to") or _one_id(headers, "ce-source")
    if receiver is None and not received.reply:
        return None
    msg_id = _one_id(headers, "ce-id")
    return ACLMessage(
        performative=Performative.NOT_UNDERSTOOD,
        sender_id=agent_id,
        receiver_id=receiver,
        correlation_id=_one_id(headers, "acl-correlation-id") or msg_id,
        in_reply_to=_one_id(headers, "acl-reply-with") or msg_id,
        protocol=_one_id(headers, "acl-protocol"),
        hops=1,
        caused_by=(msg_id,) if msg_id else (),
        payload={"reason": redact(str(exc)), "field": exc.field, "message_id": msg_id},
    )


def _all_values(headers: Mapping[str, str]) -> dict[str, list[str]]:
    """Every text value of each header, by lower-case name (names in any case are one)."""
    out: dict[str, list[str]] = {}
    for key, value in headers.items():
        if isinstance(key, str) and isinstance(value, str):
            out.setdefault(key.lower(), []).append(value)
    return out


def _one_id(headers: Mapping[str, list[str]], name: str) -> str | None:
    """The header's value if it was given once and is an id, else None (it cannot be read)."""
    values = headers.get(name, ())
    if len(values) != 1:
        return None
    try:
        return validate_id(values[0].strip(" \t"), name, remember=False)
    except InvalidIdentifier:
        return None
