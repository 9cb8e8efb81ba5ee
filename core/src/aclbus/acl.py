"""The ACL envelope: `ACLMessage`, the 22 FIPA `Performative` acts, and `ACLMessage.reply`.

An `ACLMessage` is immutable once built. Building one validates every field and raises
pydantic's ``ValidationError`` naming the field; messages decoded from the wire are checked by
`aclbus.wire` instead, which raises `aclbus.ACLDecodeError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from aclbus._internal.uuid7 import new_id
from aclbus.subjects import validate_id, validate_topic

__all__ = [
    "ACL_VERSION",
    "ACLMessage",
    "Performative",
]

ACL_VERSION: Final = "1.0"
"""The version of the envelope this library writes (major.minor)."""

MIN_TTL_SECONDS: Final = 1.0
"""The shortest TTL: NATS' per-message TTL has a resolution of one second."""

MAX_HOPS: Final = 255
"""The largest ``hops`` a message can carry (the bus' ``max_hops`` setting stops far earlier)."""

MAX_CAUSATION: Final = 16
"""How many message ids ``caused_by`` keeps: the most recent ones."""

MAX_RETRY_COUNT: Final = 2**31 - 1
"""The largest ``retry_count``: a signed 32-bit integer, so every client can hold it."""

RESERVED_HEADER_PREFIXES: Final = ("ce-", "acl-", "nats-")
"""Application header names may not start with these: they belong to the envelope/server."""

RESERVED_HEADER_NAMES: Final = frozenset({"content-type"})
"""Application header names the envelope uses outside the reserved prefixes."""

ENVELOPE_EXTENSION_NAMES: Final = frozenset(
    {
        "version",
        "receiver-id",
        "receivers",
        "priority",
        "retry-count",
        "ttl",
        "reply-by",
        "correlation-id",
        "reply-to",
        "reply-with",
        "in-reply-to",
        "protocol",
        "message-type",
        "topic",
        "routing-key",
        "language",
        "ontology",
        "hops",
        "caused-by",
    }
)
"""The ``acl-*`` headers of this version, without ``acl-``: not usable as ``extensions``."""


class Performative(StrEnum):
    """The 22 communicative acts of the FIPA ACL specification (SC00037J), by their FIPA names."""

    ACCEPT_PROPOSAL = "accept-proposal"
    AGREE = "agree"
    CANCEL = "cancel"
    CFP = "cfp"
    CONFIRM = "confirm"
    DISCONFIRM = "disconfirm"
    FAILURE = "failure"
    INFORM = "inform"
    INFORM_IF = "inform-if"
    INFORM_REF = "inform-ref"
    NOT_UNDERSTOOD = "not-understood"
    PROPAGATE = "propagate"
    PROPOSE = "propose"
    PROXY = "proxy"
    QUERY_IF = "query-if"
    QUERY_REF = "query-ref"
    REFUSE = "refuse"
    REJECT_PROPOSAL = "reject-proposal"
    REQUEST = "request"
    REQUEST_WHEN = "request-when"
    REQUEST_WHENEVER = "request-whenever"
    SUBSCRIBE = "subscribe"


HEADER_TEXT: Final = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,1022}[\x21-\x7e])?")
"""A text field that travels in a header: printable ASCII, no space at either end (NATS
clients trim a header value's outer whitespace)."""
HEADER_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,127}")
"""The name of an application header (``msg.headers``): lower-case, as HTTP/2 carries it."""
VERSION_FORMAT: Final = re.compile(r"[0-9]{1,4}\.[0-9]{1,4}")
"""What an ``acl_version`` looks like: ``major.minor``."""


def _header_text(value: str) -> str:
    if not HEADER_TEXT.fullmatch(value):
        raise ValueError(
            "must be 1-1024 printable ASCII characters, without a space at either end "
            "(it travels in a header)"
        )
    return value


def as_utc(value: datetime) -> datetime:
    """Return ``value`` in UTC; a naive time is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None


def _plus_seconds(start: datetime, seconds: float) -> datetime:
    """``start + seconds``, or the latest representable time when that overflows."""
    try:
        return start + timedelta(seconds=seconds)
    except OverflowError:
        return datetime.max.replace(tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def _one_off_id(value: str) -> str:
    return validate_id(value, remember=False)


ONE_OFF_ID_FIELDS: Final = frozenset({"message_id", "correlation_id", "reply_with", "in_reply_to"})
"""Id fields that name one message (with ``caused_by``): checked without being kept in the
cache of known ids, which they would only crowd out (see `aclbus.subjects.validate_id`)."""

Id = Annotated[str, AfterValidator(validate_id)]
OneOffId = Annotated[str, AfterValidator(_one_off_id)]
HeaderText = Annotated[str, AfterValidator(_header_text)]
Dotted = Annotated[str, AfterValidator(validate_topic)]
UtcTime = Annotated[datetime, AfterValidator(as_utc)]


class ACLMessage(BaseModel):
    """One FIPA ACL message with aclbus' transport fields.

    Only ``performative`` and ``sender_id`` are required; ``message_id`` (a UUIDv7) and
    ``timestamp`` (now, UTC) are filled in. Ids are 1-128 ASCII letters, digits, ``_`` or ``-``.

    Attributes:
        message_id: Unique id of this message; the dedup key (``Nats-Msg-Id``).
        correlation_id: The conversation this message belongs to (FIPA ``conversation-id``).
        reply_to: The agent that replies should go to, when not the sender.
        timestamp: When the message was made (UTC).
        ttl: Seconds the message stays valid after ``timestamp`` (finite, at least 1 s);
            None: forever.
        priority: 0 (lowest) to 9 (highest); 4 is normal.
        retry_count: How many times the sender has already sent this message (0 to 2**31-1).
        sender_id: The agent that sent it.
        receiver_id: The agent it is for, for one receiver.
        receivers: All receivers, for an act addressed to several agents.
        message_type: An application type, dotted (``task.request``).
        performative: The communicative act.
        payload: The content: any JSON value (a pydantic model is encoded with its JSON dump).
        topic: The dotted topic it was published on, for topic traffic.
        routing_key: A key that orders or routes related messages (kept in order per key).
        reply_with: An expression the receiver quotes in ``in_reply_to``.
        in_reply_to: The ``reply_with`` (or ``message_id``) of the message this answers.
        reply_by: The latest time a reply is useful (UTC).
        protocol: The interaction protocol (``fipa-request``, ``fipa-contract-net``).
        language: The language of the content.
        ontology: The ontology that gives the content its meaning.
        hops: How many agents this message has passed through: a reply or a forward is one
            more hop than the message that caused it. A bus refuses to send, and dead-letters
            on receipt, a message with more than ``ACLBUS_MAX_HOPS``, which stops agent loops.
        caused_by: The ids of the messages that led to this one, oldest first (at most
            `MAX_CAUSATION`, the most recent): the causation chain.
        acl_version: The envelope version, ``major.minor``.
        headers: Application headers (lower-case names, not ``ce-``, ``acl-``, ``nats-`` or
            ``content-type``).
        extensions: Fields of a newer minor version this library does not know, kept as read
            (names without ``acl-``, never one of this version's ``acl-*`` headers).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=False)

    message_id: OneOffId = Field(default_factory=new_id)
    correlation_id: OneOffId | None = None
    reply_to: Id | None = None
    timestamp: UtcTime = Field(default_factory=_now)
    ttl: float | None = Field(default=None, ge=MIN_TTL_SECONDS, allow_inf_nan=False)
    priority: int = Field(default=4, ge=0, le=9)
    retry_count: int = Field(default=0, ge=0, le=MAX_RETRY_COUNT)
    sender_id: Id
    receiver_id: Id | None = None
    receivers: tuple[Id, ...] = ()
    message_type: Dotted | None = None
    performative: Performative
    payload: Any = None
    topic: Dotted | None = None
    routing_key: HeaderText | None = None
    reply_with: OneOffId | None = None
    in_reply_to: OneOffId | None = None
    reply_by: UtcTime | None = None
    protocol: Id | None = None
    language: HeaderText | None = None
    ontology: HeaderText | None = None
    hops: int = Field(default=0, ge=0, le=MAX_HOPS)
    caused_by: tuple[OneOffId, ...] = Field(default=(), max_length=MAX_CAUSATION)
    acl_version: str = ACL_VERSION
    headers: dict[str, HeaderText] = Field(default_factory=dict)
    extensions: dict[str, HeaderText] = Field(default_factory=dict)

    @field_validator("acl_version")
    @classmethod
    def _check_version(cls, value: str) -> str:
        if not VERSION_FORMAT.fullmatch(value):
            raise ValueError("must be major.minor, like '1.0'")
        return value

    @field_validator("headers", "extensions")
    @classmethod
    def _check_header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not HEADER_NAME.fullmatch(name):
                raise ValueError(
                    f"header name {name[:140]!r} must be 1-128 lower-case ASCII letters, digits, "
                    "'_' or '-', starting with a letter or digit"
                )
        return value

    @field_validator("headers")
    @classmethod
    def _check_reserved(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.startswith(RESERVED_HEADER_PREFIXES) or name in RESERVED_HEADER_NAMES:
                raise ValueError(f"header name {name!r} is reserved for the envelope")
        return value

    @field_validator("extensions")
    @classmethod
    def _check_extension_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name in ENVELOPE_EXTENSION_NAMES:
                raise ValueError(
                    f"extension {name!r} would be written as header 'acl-{name}', which is "
                    "an envelope field of this version: set the field instead"
                )
        return value

    @property
    def expires_at(self) -> datetime | None:
        """When the message expires (``timestamp + ttl``), or None if it never does.

        A TTL that reaches past the year 9999 gives the latest time Python can hold.
        """
        return None if self.ttl is None else _plus_seconds(self.timestamp, self.ttl)

    def is_expired(self, now: datetime | None = None) -> bool:
        """Tell whether the message's TTL has run out at ``now`` (default: the current time).

        Args:
            now: The time to judge by; a naive time is taken to be UTC.
        """
        if self.ttl is None:
            return False
        when = _now() if now is None else as_utc(now)
        return when >= _plus_seconds(self.timestamp, self.ttl)

    @property
    def all_receivers(self) -> tuple[str, ...]:
        """``receiver_id`` followed by ``receivers``, without repeats."""
        receiver, more = self.receiver_id, self.receivers
        if receiver is None:
            return more
        if not more:  # the usual message: one receiver (no generator to make)
            return (receiver,)
        return (receiver, *[r for r in more if r != receiver])

    def reply(
        self,
        performative: Performative | str,
        payload: Any = None,
        **fields: Any,
    ) -> ACLMessage:
        """Build the reply to this message, with JADE ``createReply`` semantics.

        The reply goes to ``reply_to`` or else the sender; it comes from this message's
        receiver; it keeps the conversation (``correlation_id``, or this ``message_id`` when the
        conversation had no id), ``protocol``, ``language``, ``ontology`` and ``priority``; its
        ``in_reply_to`` is this message's ``reply_with``, or its ``message_id``. It gets a new
        ``message_id`` and ``timestamp``; ``reply_to``, ``reply_with`` and ``reply_by`` are not
        copied. It is one hop more than this message, which it names last in ``caused_by``.

        Args:
            performative: The act of the reply.
            payload: The reply's content.
            **fields: Any other field to set or override. ``sender_id`` is required when this
                message did not have exactly one receiver (a broadcast, a group message, or one
                addressed to several agents, where any of them may be the one replying).

        Raises:
            ValueError: No sender can be derived and none was given.
            pydantic.ValidationError: A field of the reply is invalid.
        """
        sender = fields.pop("sender_id", None)
        if not fields and performative in _PERFORMATIVES and _id_or_none(sender):
            return self._fast_reply(performative, payload, sender)
        if sender is None:
            receivers = self.all_receivers
            if len(receivers) != 1:
                raise ValueError(
                    "reply() needs sender_id=...: the original message has "
                    f"{len(receivers) or 'no'} receivers, so the replying agent is not known"
                )
            sender = receivers[0]
        values: dict[str, Any] = {
            "performative": performative,
            "payload": payload,
            "sender_id": sender,
            "receiver_id": self.reply_to or self.sender_id,
            "correlation_id": self.correlation_id or self.message_id,
            "in_reply_to": self.reply_with or self.message_id,
            "protocol": self.protocol,
            "language": self.language,
            "ontology": self.ontology,
            "priority": self.priority,
            **self._next_hop(),
        }
        values.update(fields)
        return ACLMessage(**values)

    def _fast_reply(
        self, performative: Performative | str, payload: Any, sender: str | None
    ) -> ACLMessage:
        """`reply` without validating what comes from this (valid) message again.

        Only the new values are checked: the act, the sender and the payload's type is free.
        """
        if sender is None:
            receivers = self.all_receivers
            if len(receivers) != 1:
                raise ValueError(
                    "reply() needs sender_id=...: the original message has "
                    f"{len(receivers) or 'no'} receivers, so the replying agent is not known"
                )
            sender = receivers[0]
        fields = _TEMPLATE.copy()
        fields.update(
            message_id=new_id(),
            timestamp=_now(),
            performative=Performative(performative),
            payload=payload,
            sender_id=sender,
            receiver_id=self.reply_to or self.sender_id,
            correlation_id=self.correlation_id or self.message_id,
            in_reply_to=self.reply_with or self.message_id,
            protocol=self.protocol,
            language=self.language,
            ontology=self.ontology,
            priority=self.priority,
            headers={},
            extensions={},
            **self._next_hop(),
        )
        if fields["hops"] > MAX_HOPS:
            # the envelope's own bound: let validation raise its usual error
            return ACLMessage(**{k: v for k, v in fields.items() if k != "acl_version"})
        return trusted(fields)

    def forward(self, receiver_id: str, *, sender_id: str, **fields: Any) -> ACLMessage:
        """This message passed on to another agent: one hop more, caused by this one.

        The copy keeps the content and the conversation; it gets a new ``message_id`` and
        ``timestamp``, the forwarding agent as sender and ``receiver_id`` as its one receiver.

        Args:
            receiver_id: The agent to forward to.
            sender_id: The forwarding agent.
            **fields: Any other field to set or override.

        Raises:
            pydantic.ValidationError: A field of the copy is invalid (``hops`` over
                `MAX_HOPS` included).
        """
        values = self.model_dump(exclude={"message_id", "timestamp", "receivers"})
        values.update(
            sender_id=sender_id,
            receiver_id=receiver_id,
            reply_to=self.reply_to or self.sender_id,
            **self._next_hop(),
        )
        values.update(fields)
        return ACLMessage(**values)

    def _next_hop(self) -> dict[str, Any]:
        return {
            "hops": self.hops + 1,
            "caused_by": (*self.caused_by, self.message_id)[-MAX_CAUSATION:],
        }


_PERFORMATIVES: Final = frozenset(Performative) | frozenset(p.value for p in Performative)


_new = object.__new__
_set = object.__setattr__
_FIELD_NAMES: Final = frozenset(ACLMessage.model_fields)
# Every field in the model's order; those without a constant default are to be set.
_TEMPLATE: Final[dict[str, Any]] = {
    name: (info.default if not info.is_required() and info.default_factory is None else None)
    for name, info in ACLMessage.model_fields.items()
}


def trusted(fields: dict[str, Any], given: set[str] | None = None) -> ACLMessage:
    """Build a message from values already checked, every field given, without validation.

    As pydantic's ``model_construct``, minus its loop over fields to find defaults (the largest
    single cost of decoding). Only for aclbus' own decoder, `build` and `ACLMessage.reply`: a
    wrong value here makes an invalid message.

    Args:
        fields: Every field, in the model's order.
        given: The fields to count as set explicitly (``model_fields_set``); None: all.
    """
    msg = _new(ACLMessage)
    _set(msg, "__dict__", fields)
    _set(msg, "__pydantic_fields_set__", set(_FIELD_NAMES) if given is None else given)
    _set(msg, "__pydantic_extra__", None)
    _set(msg, "__pydantic_private__", None)
    return msg


def _passes(check: Callable[[str], object], value: Any) -> bool:
    """Whether ``value`` is a string that ``check`` takes.

    False sends the value to the validating path, which names the field in its error.
    """
    if value.__class__ is not str:
        return False
    try:
        check(value)
    except ValueError:
        return False
    return True


def _id_or_none(value: Any) -> bool:
    return value is None or _passes(validate_id, value)


def _one_off_id_or_none(value: Any) -> bool:
    return value is None or _passes(_one_off_id, value)


def _dotted_or_none(value: Any) -> bool:
    return value is None or _passes(validate_topic, value)


def _text_or_none(value: Any) -> bool:
    return value is None or (value.__class__ is str and HEADER_TEXT.fullmatch(value) is not None)


def _int_in(low: int, high: int) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return value.__class__ is int and low <= value <= high

    return check


# The fields `build` checks itself: field -> a test that is True only for values pydantic takes
# unchanged. Anything else (another type pydantic would convert, a bad value, another field)
# goes through pydantic, which converts it or raises its usual error.
_QUICK: Final[dict[str, Callable[[Any], bool]]] = {
    **{
        name: _one_off_id_or_none if name in ONE_OFF_ID_FIELDS else _id_or_none
        for name in ("correlation_id", "reply_to", "reply_with", "in_reply_to", "protocol")
    },
    "message_id": lambda value: _passes(_one_off_id, value),
    "sender_id": lambda value: _passes(validate_id, value),
    "receiver_id": _id_or_none,
    "message_type": _dotted_or_none,
    "topic": _dotted_or_none,
    "routing_key": _text_or_none,
    "language": _text_or_none,
    "ontology": _text_or_none,
    "priority": _int_in(0, 9),
    "retry_count": _int_in(0, MAX_RETRY_COUNT),
    "hops": _int_in(0, MAX_HOPS),
    "payload": lambda value: True,
}
_PERFORMATIVE_OF: Final[dict[str, Performative]] = {p: p for p in Performative}


def build(**fields: Any) -> ACLMessage:
    """``ACLMessage(**fields)``, about three times faster for the usual fields.

    The performative, ids, dotted names, header texts, small integers and the payload are
    checked here, and the message is made without pydantic's pass over every field; a message
    with any other field (or a value pydantic would convert or refuse) is made by
    ``ACLMessage(**fields)`` itself, so the result and the errors are the same.

    Raises:
        pydantic.ValidationError: A field is invalid (raised by `ACLMessage`).
    """
    try:
        performative = _PERFORMATIVE_OF.get(fields["performative"])
        if performative is None or "sender_id" not in fields:
            return ACLMessage(**fields)
        for name, value in fields.items():
            if name != "performative" and not _QUICK[name](value):
                return ACLMessage(**fields)
    except (KeyError, TypeError):  # a field build does not check, an unhashable performative
        return ACLMessage(**fields)
    values = field_template()
    values.update(fields)
    values["performative"] = performative
    if "message_id" not in fields:
        values["message_id"] = new_id()
    values["timestamp"] = _now()  # a given timestamp is left to pydantic (it converts)
    values["headers"] = {}
    values["extensions"] = {}
    return trusted(values, set(fields))


def field_template() -> dict[str, Any]:
    """A dict of every field in the model's order, with the constant defaults filled in."""
    return _TEMPLATE.copy()
