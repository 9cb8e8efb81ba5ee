"""The JSON schemas an AsyncAPI document of aclbus agents shares: the ACL headers, any payload.

`ACL_HEADERS_SCHEMA` is the wire format's envelope (``docs/wire-format.md``, section 3) as a
JSON Schema; the document keeps it, and the any-JSON payload, in ``components`` under the keys
given here, and every message of an agent refers to them there.
"""

from __future__ import annotations

from typing import Any, Final

from aclbus.acl import ACL_VERSION, MAX_CAUSATION, Performative
from aclbus.subjects import MAX_ID_LENGTH
from aclbus.wire import CE_SPECVERSION, CE_TYPE_PREFIX

__all__ = [
    "ACL_HEADERS_SCHEMA",
    "ANY_JSON_SCHEMA",
    "ANY_MESSAGE_KEY",
    "HEADERS_KEY",
    "ID_PATTERN",
    "PAYLOAD_KEY",
]

ID_PATTERN: Final = f"[A-Za-z0-9_-]{{1,{MAX_ID_LENGTH}}}"
"""A regular expression of one aclbus id (an agent, a group, a topic token, ...)."""
_TIME: Final = {"type": "string", "format": "date-time", "description": "RFC 3339, UTC"}


def _id(description: str) -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{ID_PATTERN}$", "description": description}


def _dotted(description: str) -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": rf"^{ID_PATTERN}(\.{ID_PATTERN})*$",
        "description": description,
    }


def _text(description: str) -> dict[str, Any]:
    # 1-1024 printable ASCII characters, no space at either end (wire format, 4.5).
    return {"type": "string", "pattern": "^[!-~]([ -~]{0,1022}[!-~])?$", "description": description}


def _integer(description: str) -> dict[str, Any]:
    return {"type": "string", "pattern": "^[0-9]{1,10}$", "description": description}


ACL_HEADERS_SCHEMA: Final[dict[str, Any]] = {
    "title": "ACLHeaders",
    "type": "object",
    "description": (
        "The envelope of an aclbus message, in NATS headers (wire format "
        f"{ACL_VERSION}, docs/wire-format.md): CloudEvents binary mode (ce-*) and FIPA ACL "
        "fields (acl-*). Names are case-insensitive. Other headers are application headers "
        "(traceparent, ...) or acl-* extensions of a newer minor version."
    ),
    "required": ["ce-specversion", "ce-id", "ce-source", "ce-type"],
    "properties": {
        "ce-specversion": {"type": "string", "const": CE_SPECVERSION},
        "ce-id": _id("message_id (a UUIDv7 when aclbus makes it)"),
        "ce-source": _id("sender_id: the sending agent"),
        "ce-type": {
            "type": "string",
            "enum": [CE_TYPE_PREFIX + p.value for p in Performative],
            "description": "the performative",
        },
        "ce-time": {**_TIME, "description": "timestamp, RFC 3339, UTC"},
        "content-type": {
            "type": "string",
            "default": "application/json",
            "description": "the body's codec",
        },
        "acl-version": {
            "type": "string",
            "pattern": "^[0-9]{1,4}\\.[0-9]{1,4}$",
            "default": ACL_VERSION,
        },
        "acl-receiver-id": _id("receiver_id: the agent it is for"),
        "acl-receivers": {
            "type": "string",
            "pattern": f"^{ID_PATTERN}(,{ID_PATTERN})*$",
            "description": "receivers, joined by ',' without spaces",
        },
        "acl-priority": _integer("priority, 0 (lowest) to 9; 4 when absent"),
        "acl-retry-count": _integer("retry_count; 0 when absent"),
        "acl-ttl": {
            "type": "string",
            "pattern": r"^[0-9]{1,20}(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?$",
            "description": "ttl: seconds after ce-time, at least 1; never expires when absent",
        },
        "acl-reply-by": {**_TIME, "description": "reply_by: the latest useful reply"},
        "acl-hops": _integer(
            "hops: agents the message has passed through, 0 to 255; 0 when absent. A bus "
            "refuses to send, and dead-letters on receipt, one over ACLBUS_MAX_HOPS"
        ),
        "acl-caused-by": {
            "type": "string",
            "pattern": f"^{ID_PATTERN}(,{ID_PATTERN}){{0,{MAX_CAUSATION - 1}}}$",
            "description": "caused_by: ids of the messages that led to this one, oldest first",
        },
        "acl-correlation-id": _id("correlation_id: the conversation"),
        "acl-reply-to": _id("reply_to: where replies go, when not the sender"),
        "acl-reply-with": _id("reply_with: to be quoted in the reply's acl-in-reply-to"),
        "acl-in-reply-to": _id("in_reply_to: what this message answers"),
        "acl-protocol": _id("protocol: the interaction protocol"),
        "acl-message-type": _dotted("message_type: the application's message type"),
        "acl-topic": _dotted("topic: the topic it was published on"),
        "acl-routing-key": _text("routing_key: related messages keep their order per key"),
        "acl-language": _text("language of the content"),
        "acl-ontology": _text("ontology of the content"),
    },
    "additionalProperties": {"type": "string"},
}
"""JSON Schema of the headers of an aclbus message (``docs/wire-format.md``, section 3)."""

ANY_JSON_SCHEMA: Final[dict[str, Any]] = {
    "title": "AnyJSON",
    "description": (
        "The payload: any JSON value (RFC 8259, UTF-8); an empty body is null. The handler "
        "declares no schema of its own."
    ),
}
"""The payload of a handler that declares no model of its own."""

HEADERS_KEY: Final = "ACLHeaders"
"""Where `ACL_HEADERS_SCHEMA` is in ``components/schemas``."""
PAYLOAD_KEY: Final = "AnyJSON"
"""Where `ANY_JSON_SCHEMA` is in ``components/schemas``."""
ANY_MESSAGE_KEY: Final = "ACLMessage"
"""The message of ``components/messages`` that stands for any aclbus message."""
