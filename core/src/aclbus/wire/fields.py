"""The optional headers of the envelope: the field each one holds, and the parser of its value.

A parser takes the header's name (which an `ACLDecodeError` names) and its value, and returns
the field's value checked as `ACLMessage` would check it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import partial
from typing import Any, Final

from aclbus.acl import (
    HEADER_TEXT,
    MAX_CAUSATION,
    MAX_HOPS,
    MAX_RETRY_COUNT,
    MIN_TTL_SECONDS,
    ONE_OFF_ID_FIELDS,
)
from aclbus.errors import ACLDecodeError, InvalidIdentifier
from aclbus.subjects import validate_id, validate_topic
from aclbus.wire.timestamps import parse_time

__all__ = [
    "PARSERS",
    "TEXT_FIELD_HEADERS",
    "VARYING_TEXT_HEADERS",
    "parse_id",
    "parse_message_id",
]

# A decimal number of seconds: what JSON, Go's strconv and Python's repr(float) write.
_DECIMAL: Final = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,20})?(?:[eE][+-]?[0-9]{1,3})?")
_MAX_INT_DIGITS: Final = 10


def parse_id(header: str, value: str) -> str:
    """An id (a dotted name of an agent, a conversation, a protocol)."""
    return _checked(header, value, validate_id)


def parse_message_id(header: str, value: str) -> str:
    """An id that names one message (its own, the one it answers): not worth remembering."""
    return _checked(header, value, partial(validate_id, remember=False))


def _dotted(header: str, value: str) -> str:
    return _checked(header, value, validate_topic)


def _checked(header: str, value: str, check: Callable[[str], str]) -> str:
    try:
        return check(value)
    except InvalidIdentifier as exc:
        raise ACLDecodeError(header, str(exc)) from None


def _text(header: str, value: str) -> str:
    if not HEADER_TEXT.fullmatch(value):
        raise ACLDecodeError(header, "must be 1-1024 printable ASCII characters")
    return value


def _receivers(header: str, raw: str) -> tuple[str, ...]:
    try:
        return tuple(validate_id(r, "receiver") for r in raw.split(","))
    except InvalidIdentifier as exc:
        raise ACLDecodeError(header, str(exc)) from None


def _int_parser(low: int, high: int) -> Callable[[str, str], int]:
    def parse(header: str, raw: str) -> int:
        if (
            not (raw.isascii() and raw.isdigit())
            or len(raw) > _MAX_INT_DIGITS
            or not low <= int(raw) <= high
        ):
            raise ACLDecodeError(
                header, f"must be an integer from {low} to {high}, got {raw[:32]!r}"
            )
        return int(raw)

    return parse


def _causation(header: str, raw: str) -> tuple[str, ...]:
    ids = raw.split(",")
    if len(ids) > MAX_CAUSATION:
        raise ACLDecodeError(
            header, f"holds {len(ids)} message ids, over the limit of {MAX_CAUSATION}"
        )
    try:
        return tuple(validate_id(i, "message id", remember=False) for i in ids)
    except InvalidIdentifier as exc:
        raise ACLDecodeError(header, str(exc)) from None


def _ttl(header: str, raw: str) -> float:
    ttl = float(raw) if _DECIMAL.fullmatch(raw) else math.nan
    if not MIN_TTL_SECONDS <= ttl < math.inf:
        raise ACLDecodeError(
            header,
            f"must be a finite decimal number of seconds >= {MIN_TTL_SECONDS:g}, got {raw[:32]!r}",
        )
    return ttl


_ID_FIELDS: Final = {
    "receiver_id": "acl-receiver-id",
    "correlation_id": "acl-correlation-id",
    "reply_to": "acl-reply-to",
    "reply_with": "acl-reply-with",
    "in_reply_to": "acl-in-reply-to",
    "protocol": "acl-protocol",
}
_DOTTED_FIELDS: Final = {"message_type": "acl-message-type", "topic": "acl-topic"}
_FREE_TEXT_FIELDS: Final = {
    "routing_key": "acl-routing-key",
    "language": "acl-language",
    "ontology": "acl-ontology",
}
_TEXT_FIELDS: Final = {**_ID_FIELDS, **_DOTTED_FIELDS, **_FREE_TEXT_FIELDS}
_VARYING_TEXT: Final = ("correlation_id", "reply_with", "in_reply_to")
VARYING_TEXT_HEADERS: Final = tuple((name, _TEXT_FIELDS[name]) for name in _VARYING_TEXT)
"""``(field, header)`` of the optional text fields that name one conversation or message
(`encode` writes them first, among the headers that vary from message to message)."""
TEXT_FIELD_HEADERS: Final = tuple(
    item for item in _TEXT_FIELDS.items() if item[0] not in _VARYING_TEXT
)
"""``(field, header)`` of the other optional fields whose value is the header's text as it is."""

PARSERS: Final[dict[str, tuple[str, Callable[[str, str], Any]]]] = {
    **{
        header: (name, parse_message_id if name in ONE_OFF_ID_FIELDS else parse_id)
        for name, header in _ID_FIELDS.items()
    },
    **{header: (name, _dotted) for name, header in _DOTTED_FIELDS.items()},
    **{header: (name, _text) for name, header in _FREE_TEXT_FIELDS.items()},
    "acl-receivers": ("receivers", _receivers),
    "acl-priority": ("priority", _int_parser(0, 9)),
    "acl-retry-count": ("retry_count", _int_parser(0, MAX_RETRY_COUNT)),
    "acl-hops": ("hops", _int_parser(0, MAX_HOPS)),
    "acl-caused-by": ("caused_by", _causation),
    "acl-ttl": ("ttl", _ttl),
    "acl-reply-by": ("reply_by", parse_time),
}
"""The optional envelope headers: header -> (field, parser(header, value))."""
