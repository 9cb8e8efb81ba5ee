"""The JSON bodies of the messaging routes, and how one becomes an `aclbus.ACLMessage`.

The body models say in the OpenAPI document what each field takes; `to_message` then builds
the envelope, whose own validation is the last word, and turns its refusals into the same
field-level 422 as FastAPI's (``loc`` = ``["body", <field>]``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import HTTPException, status
from fastapi.exceptions import RequestValidationError
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from aclbus import ACLMessage, Performative, PublishAck

__all__ = [
    "Ack",
    "BroadcastBody",
    "MessageFields",
    "RequestBody",
    "SendBody",
    "Sent",
    "to_message",
]

ID_PATTERN: Final = r"^[A-Za-z0-9_-]{1,128}$"
"""An aclbus id (agent, group, message, conversation): as `aclbus.subjects.validate_id`."""
DOTTED_PATTERN: Final = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
"""A dotted name (``task.request``), as a message type is."""
HEADER_TEXT_PATTERN: Final = r"^[\x21-\x7e]([\x20-\x7e]{0,1022}[\x21-\x7e])?$"
"""A field that travels in a header: 1-1024 printable ASCII, no space at either end."""
HEADER_NAME_PATTERN: Final = r"^(?!ce-|acl-|nats-|content-type$)[a-z0-9][a-z0-9_-]{0,127}$"
"""An application header's name: lower-case, not one of the envelope's (``ce-``, ``acl-``,
``nats-``, ``content-type``)."""
MAX_RECEIVERS: Final = 1000
"""The most receivers one ``/communication/send`` may name."""

AgentId = Annotated[str, Field(pattern=ID_PATTERN, examples=["worker"])]
OneId = Annotated[str, Field(pattern=ID_PATTERN)]
Text = Annotated[str, Field(pattern=HEADER_TEXT_PATTERN)]
HeaderName = Annotated[str, Field(pattern=HEADER_NAME_PATTERN)]


class MessageFields(BaseModel):
    """The fields of a message a caller may set; the gateway sets ``sender_id`` to the caller.

    Attributes:
        performative: The communicative act (FIPA name).
        sender_id: The caller's own agent, or left out; any other agent is refused (403).
        payload: The content, any JSON value (``content`` is accepted as its other name).
        message_type: An application type, dotted (``task.request``).
        ontology: The ontology that gives the content its meaning.
        language: The language of the content.
        protocol: The interaction protocol (``fipa-request``).
        correlation_id: The conversation this message belongs to.
        reply_with: An expression the receiver quotes in ``in_reply_to``.
        in_reply_to: The ``reply_with`` (or message id) this message answers.
        reply_to: The agent replies should go to, when not the caller.
        message_id: The message's id (default: a new UUIDv7). Sending again with the same id
            within the broker's dedup window stores nothing new: a safe HTTP retry.
        ttl: Seconds the message stays valid (at least 1).
        priority: 0 (lowest) to 9 (highest).
        routing_key: A key that keeps related messages in order.
        reply_by: The latest time a reply is useful.
        headers: Application headers (lower-case names, not ``ce-``, ``acl-``, ``nats-``).
    """

    # Python's re: the header-name pattern needs a look-ahead, which the default engine lacks.
    model_config = ConfigDict(extra="forbid", regex_engine="python-re")

    performative: Performative
    sender_id: AgentId | None = None
    payload: Any = Field(default=None, validation_alias=AliasChoices("payload", "content"))
    message_type: Annotated[str, Field(pattern=DOTTED_PATTERN, max_length=1024)] | None = None
    ontology: Text | None = None
    language: Text | None = None
    protocol: OneId | None = None
    correlation_id: OneId | None = None
    reply_with: OneId | None = None
    in_reply_to: OneId | None = None
    reply_to: AgentId | None = None
    message_id: OneId | None = None
    ttl: float | None = Field(default=None, ge=1, allow_inf_nan=False)
    priority: int = Field(default=4, ge=0, le=9)
    routing_key: Text | None = None
    reply_by: datetime | None = None
    headers: dict[HeaderName, Text] = Field(
        default_factory=dict,
        max_length=64,
        # pydantic writes the key pattern as patternProperties: other names are not allowed.
        json_schema_extra={"additionalProperties": False},
    )


class SendBody(MessageFields):
    """A message to one or more agents' inboxes: ``receiver_id``, ``receivers``, or both.

    Attributes:
        receiver_id: The agent it is for.
        receivers: All receivers, for an act addressed to several agents.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["receiver_id"], "properties": {"receiver_id": {"type": "string"}}},
                {"required": ["receivers"], "properties": {"receivers": {"minItems": 1}}},
            ]
        }
    )

    receiver_id: AgentId | None = None
    receivers: list[AgentId] = Field(default_factory=list, max_length=MAX_RECEIVERS)

    @model_validator(mode="after")
    def _has_a_receiver(self) -> SendBody:
        if self.receiver_id is None and not self.receivers:
            raise ValueError("name a receiver: receiver_id, receivers, or both")
        return self


class BroadcastBody(MessageFields):
    """A message to every agent (the broadcast subject)."""


class RequestBody(MessageFields):
    """A request to one agent, answered by its reply.

    Attributes:
        performative: The act (default ``request``).
        receiver_id: The agent to ask.
        timeout: Seconds to wait for the reply (default: the bus' ``request_timeout``; at
            most the gateway's ``max_request_timeout``).
    """

    performative: Performative = Performative.REQUEST
    receiver_id: AgentId
    timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False)


class Ack(BaseModel):
    """The broker's ack of one publish.

    Attributes:
        receiver: The receiver it was for (None for a broadcast).
        stream: The stream that stored it (None when not stored).
        sequence: Its sequence in that stream.
        duplicate: The message id was already stored: nothing new was stored.
    """

    receiver: str | None = None
    stream: str | None = None
    sequence: int | None = None
    duplicate: bool = False

    @classmethod
    def of(cls, ack: PublishAck, receiver: str | None = None) -> Ack:
        """The body of ``ack``."""
        return cls(
            receiver=receiver, stream=ack.stream, sequence=ack.sequence, duplicate=ack.duplicate
        )


class Sent(BaseModel):
    """What a send or broadcast answers.

    Attributes:
        message_id: The message's id (the dedup key).
        acks: One ack per receiver (one for a broadcast).
    """

    message_id: str
    acks: list[Ack]


_NOT_ENVELOPE: Final = {"timeout", "sender_id"}


def to_message(body: MessageFields, agent_id: str) -> ACLMessage:
    """The envelope of ``body``, sent by ``agent_id`` (the caller).

    Raises:
        HTTPException: 403 when the body names another sender.
        RequestValidationError: The envelope refuses a field (422, naming it).
    """
    if body.sender_id is not None and body.sender_id != agent_id:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"the caller acts as {agent_id!r}, not as {body.sender_id!r}",
        )
    fields = body.model_dump(exclude_unset=True, exclude_none=True, exclude=_NOT_ENVELOPE)
    fields["performative"] = body.performative
    try:
        return ACLMessage(sender_id=agent_id, **fields)
    except ValidationError as exc:
        raise RequestValidationError(
            [
                {"type": e["type"], "loc": ("body", *e["loc"]), "msg": e["msg"]}
                for e in exc.errors(include_url=False)
            ]
        ) from None
