"""Encoding: an `ACLMessage` as ``(headers, body)``.

The envelope goes in the headers, the payload alone in the body, written by the codec that
``content-type`` names.
"""

from __future__ import annotations

from aclbus.acl import ACLMessage
from aclbus.codec import CodecRegistry, EncodeError
from aclbus.errors import MessageTooLarge
from aclbus.wire.cloudevents import CE_SPECVERSION, TYPE_BY_PERFORMATIVE
from aclbus.wire.fields import TEXT_FIELD_HEADERS, VARYING_TEXT_HEADERS
from aclbus.wire.size import encoded_size
from aclbus.wire.timestamps import format_time

__all__ = ["encode"]


def encode(
    msg: ACLMessage,
    codecs: CodecRegistry,
    *,
    content_type: str | None = None,
    max_bytes: int | None = None,
) -> tuple[dict[str, str], bytes]:
    """Encode a message as ``(headers, body)``.

    Args:
        msg: The message.
        codecs: Where the body's codec is found.
        content_type: The body's content type; the registry's default when None.
        max_bytes: The largest encoded size (headers and body) allowed, or None.

    Raises:
        EncodeError: The payload cannot be encoded by the codec, or no codec is registered
            for ``content_type``.
        MessageTooLarge: The encoded message is over ``max_bytes``.
    """
    if content_type:
        if content_type not in codecs:
            raise EncodeError(
                f"no codec for content type {content_type[:80]!r} (known: "
                f"{', '.join(sorted(codecs)) or 'none'})"
            )
        codec = codecs.get(content_type)
    else:
        codec = codecs.default
    f = msg.__dict__  # the fields: one dict lookup each rather than an attribute access
    body = codec.encode(f["payload"])
    # First the headers that change from message to message: the id, the time, then those
    # naming one conversation or message. A decoder that has seen the rest of the block
    # before need not read it again (`aclbus.wire.repeats`).
    headers = {"ce-id": f["message_id"], "ce-time": format_time(f["timestamp"])}
    for name, header in VARYING_TEXT_HEADERS:
        value = f[name]
        if value is not None:
            headers[header] = value
    if f["caused_by"]:
        headers["acl-caused-by"] = ",".join(f["caused_by"])
    if f["reply_by"] is not None:
        headers["acl-reply-by"] = format_time(f["reply_by"])
    headers["ce-specversion"] = CE_SPECVERSION
    headers["ce-source"] = f["sender_id"]
    headers["ce-type"] = TYPE_BY_PERFORMATIVE[f["performative"]]
    headers["content-type"] = codec.content_type
    headers["acl-version"] = f["acl_version"]
    if f["receiver_id"] is not None:
        headers["acl-receiver-id"] = f["receiver_id"]
    if f["receivers"]:
        headers["acl-receivers"] = ",".join(f["receivers"])
    if f["priority"] != 4:
        headers["acl-priority"] = str(f["priority"])
    if f["retry_count"]:
        headers["acl-retry-count"] = str(f["retry_count"])
    if f["ttl"] is not None:
        headers["acl-ttl"] = repr(float(f["ttl"]))
    if f["hops"]:
        headers["acl-hops"] = str(f["hops"])
    for name, header in TEXT_FIELD_HEADERS:
        value = f[name]
        if value is not None:
            headers[header] = value
    if f["extensions"]:
        for name, value in f["extensions"].items():
            headers["acl-" + name] = value  # never an envelope header: ACLMessage checks them
    if f["headers"]:
        headers.update(f["headers"])
    if max_bytes is not None:
        size = encoded_size(headers, body)
        if size > max_bytes:
            raise MessageTooLarge(size, max_bytes)
    return headers, body
