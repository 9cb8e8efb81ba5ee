"""An ACL message as JSON: the body of a webhook POST and the data of an event-stream event.

The object has the fields of `aclbus.ACLMessage` by their Python names (``message_id``,
``sender_id``, ``performative``, ``payload``, …), times in ISO 8601 UTC; ``docs/operations.md``
shows one.
"""

from __future__ import annotations

from typing import Any

import orjson

from aclbus import ACLMessage

__all__ = ["envelope_bytes", "envelope_json"]


def envelope_json(msg: ACLMessage) -> dict[str, Any]:
    """``msg`` as plain JSON data."""
    data: dict[str, Any] = msg.model_dump(mode="json")
    return data


def envelope_bytes(msg: ACLMessage) -> bytes:
    """``msg`` as compact UTF-8 JSON: exactly the bytes a webhook POST carries and signs."""
    return orjson.dumps(envelope_json(msg))
