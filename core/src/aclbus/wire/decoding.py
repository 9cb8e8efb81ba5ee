"""Decoding: ``(headers, body)`` from the wire into an `ACLMessage`, every header checked."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from aclbus.acl import (
    ACL_VERSION,
    HEADER_NAME,
    HEADER_TEXT,
    VERSION_FORMAT,
    ACLMessage,
    field_template,
    trusted,
)
from aclbus.codec import JSON, CodecRegistry
from aclbus.errors import ACLDecodeError, UnsupportedVersion
from aclbus.wire.cloudevents import CE_SPECVERSION, CE_TYPE_PREFIX, PERFORMATIVE_BY_TYPE
from aclbus.wire.fields import PARSERS, parse_id, parse_message_id
from aclbus.wire.header_block import ParsedHeaders, defect_error, error_field, normalized_headers
from aclbus.wire.timestamps import parse_time

__all__ = ["decode"]

_MAJOR: Final = ACL_VERSION.split(".", 1)[0]

# The tables `_decode` calls ``.get`` on, bound here rather than used as imported: CPython
# compiles ``name.method()`` on a name bound by an import as for a module (an attribute load
# that makes a bound method on every call), on any other name as a method call.
_PERFORMATIVE_BY_TYPE: Final = PERFORMATIVE_BY_TYPE
_PARSERS: Final = PARSERS


def decode(
    headers: Mapping[str, str] | None,
    body: bytes,
    codecs: CodecRegistry,
    *,
    max_bytes: int | None = None,
) -> ACLMessage:
    """Decode ``(headers, body)`` from the wire into an `ACLMessage`.

    Header names are read case-insensitively and values without the spaces or tabs around
    them (as NATS clients do). Every name must be a token, and a header of the envelope
    (`is_envelope_header`) may appear only once; a `ParsedHeaders` carries what its backend
    found wrong in the raw block. Unknown ``acl-*`` headers are kept in ``extensions``;
    headers outside the ``ce-``/``acl-``/``nats-`` namespaces and ``content-type`` are kept
    in ``headers``; other ``ce-*`` and all ``nats-*`` headers are ignored.

    Args:
        headers: The message's headers.
        body: The message's body.
        codecs: Where the body's codec is found (by ``content-type``; JSON when absent).
        max_bytes: The largest size accepted, or None: `encoded_size` of the headers (except
            ``nats-*`` ones, which the broker or backend adds) and the body, as ``encode``
            checks it.

    Raises:
        ACLDecodeError: A header or the body is missing, malformed or out of range, or the
            message is over ``max_bytes`` (field ``"message"``); its ``field`` names which.
        MalformedHeaders: The header block breaks the rules of a block (see `check_headers`).
        UnsupportedVersion: ``acl-version`` has a major version this library does not speak.
    """
    if max_bytes is not None and len(body) > max_bytes:  # cheap early refusal of a huge body
        raise ACLDecodeError(
            "message", f"{len(body)} bytes of body alone, over the limit of {max_bytes}"
        )
    if isinstance(headers, ParsedHeaders) and headers.defect is not None:
        raise defect_error(headers.defect)  # before "missing": a block of bad names only is empty
    if not headers:
        raise ACLDecodeError("headers", "missing: an ACL message carries its envelope in headers")
    try:
        return _decode(headers, body, codecs, max_bytes)
    except ACLDecodeError:
        raise
    except Exception as exc:  # a decoder must never raise anything else (hypothesis-tested)
        raise ACLDecodeError("message", f"cannot be decoded: {type(exc).__name__}") from exc


def _decode(
    headers: Mapping[str, str], body: bytes, codecs: CodecRegistry, max_bytes: int | None
) -> ACLMessage:
    h, size = normalized_headers(headers, body)
    if max_bytes is not None and size > max_bytes:
        raise ACLDecodeError(
            "message", f"{size} bytes (headers and body), over the limit of {max_bytes}"
        )

    version = h.pop("acl-version", ACL_VERSION)
    if version != ACL_VERSION:
        if not VERSION_FORMAT.fullmatch(version):
            raise ACLDecodeError("acl-version", f"must be major.minor, got {version[:32]!r}")
        if version.split(".", 1)[0].lstrip("0") != _MAJOR:
            raise UnsupportedVersion(version, f"{_MAJOR}.x")

    spec = _required(h, "ce-specversion")
    if spec != CE_SPECVERSION:
        raise ACLDecodeError("ce-specversion", f"must be {CE_SPECVERSION!r}, got {spec[:32]!r}")
    ce_type = _required(h, "ce-type")
    performative = _PERFORMATIVE_BY_TYPE.get(ce_type)
    if performative is None:
        raise ACLDecodeError(
            "ce-type", f"{ce_type[:64]!r} is not '{CE_TYPE_PREFIX}' + a FIPA performative"
        )
    fields = field_template()  # every field, in the model's order
    fields["message_id"] = parse_message_id("ce-id", _required(h, "ce-id"))
    fields["sender_id"] = parse_id("ce-source", _required(h, "ce-source"))
    fields["performative"] = performative
    fields["acl_version"] = version
    ce_time = h.pop("ce-time", None)
    fields["timestamp"] = (
        parse_time("ce-time", ce_time) if ce_time is not None else datetime.now(UTC)
    )
    content_type = h.pop("content-type", JSON)
    fields["payload"] = codecs.get(content_type).decode(body)

    extensions: dict[str, str] = {}
    app_headers: dict[str, str] = {}
    for name, value in h.items():
        parser = _PARSERS.get(name)
        if parser is not None:
            fields[parser[0]] = parser[1](name, value)
            continue
        if name.startswith("acl-"):
            target, key = extensions, name[4:]
        elif name.startswith(("ce-", "nats-")):
            continue  # other CloudEvents attributes and the server's own headers
        else:
            target, key = app_headers, name
        if not HEADER_NAME.fullmatch(key) or not HEADER_TEXT.fullmatch(value):
            raise ACLDecodeError(
                error_field(name),
                "application header and extension names must be 1-128 of a-z, 0-9, '_', '-' "
                "(starting with a letter or digit) and values 1-1024 printable ASCII characters",
            )
        target[key] = value
    fields["extensions"] = extensions
    fields["headers"] = app_headers
    return trusted(fields)


def _required(h: dict[str, str], header: str) -> str:
    value = h.pop(header, None)
    if value is None:
        raise ACLDecodeError(header, "missing (required header)")
    return value
