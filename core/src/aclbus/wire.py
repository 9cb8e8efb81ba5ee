"""The wire format: an `ACLMessage` as headers plus a body, and back (``docs/wire-format.md``).

CloudEvents binary mode carries the identity of the message (``ce-id``, ``ce-source``,
``ce-type``, ``ce-specversion``, ``ce-time``); ``acl-*`` headers carry the other envelope fields,
named after the field (``reply_with`` → ``acl-reply-with``); ``content-type`` picks the codec of
the body, which holds the payload alone. Decoding checks every header itself and builds the
message without validating it twice; any problem is an `ACLDecodeError` naming the header, and
a header block that breaks the rules of the block (a header of the envelope given twice, a name
that is not a token) is a `MalformedHeaders`. A backend that reads raw header blocks hands over
what a mapping cannot show in `ParsedHeaders`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final

from aclbus.acl import (
    ACL_VERSION,
    HEADER_NAME,
    HEADER_TEXT,
    MAX_CAUSATION,
    MAX_HOPS,
    MAX_RETRY_COUNT,
    MIN_TTL_SECONDS,
    ONE_OFF_ID_FIELDS,
    VERSION_FORMAT,
    ACLMessage,
    Performative,
    as_utc,
    field_template,
    trusted,
)
from aclbus.codec import JSON, CodecRegistry, EncodeError
from aclbus.errors import (
    ACLDecodeError,
    InvalidIdentifier,
    MalformedHeaders,
    MessageTooLarge,
    UnsupportedVersion,
)
from aclbus.subjects import validate_id, validate_topic

__all__ = [
    "CE_SPECVERSION",
    "CE_TYPE_PREFIX",
    "ENVELOPE_HEADER_PREFIXES",
    "HEADER_TOKEN",
    "ParsedHeaders",
    "check_headers",
    "decode",
    "encode",
    "encoded_size",
    "header_name_error",
    "is_envelope_header",
    "repeated_header_error",
]

CE_SPECVERSION: Final = "1.0"
CE_TYPE_PREFIX: Final = "fipa.acl."
_MAJOR: Final = ACL_VERSION.split(".", 1)[0]

_PERFORMATIVE_BY_TYPE: Final = {CE_TYPE_PREFIX + p.value: p for p in Performative}
_TYPE_BY_PERFORMATIVE: Final = {p: t for t, p in _PERFORMATIVE_BY_TYPE.items()}


# RFC 3339 date-time (section 5.6): 'T', 't' or ' ' between date and time, any fraction, Z or
# an offset. Digits are ASCII only.
_RFC3339: Final = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}:[0-9]{2}:[0-9]{2})(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
# The form `_fmt_time` writes: UTC, microseconds.
_CANONICAL_TIME: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z"
)
# A decimal number of seconds: what JSON, Go's strconv and Python's repr(float) write.
_DECIMAL: Final = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,20})?(?:[eE][+-]?[0-9]{1,3})?")
_MAX_INT_DIGITS: Final = 10

_TCHAR: Final = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
HEADER_TOKEN: Final = re.compile(_TCHAR + "+")
"""A header name: an RFC 7230 token (ASCII letters, digits and ``!#$%&'*+-.^_`|~``)."""
# NUL-joined names; possessive, so that a name that fails does not make it backtrack
_TOKENS: Final = re.compile(f"{_TCHAR}++(?:\x00{_TCHAR}++)*+")
_LOWER_TCHAR: Final = r"[!#$%&'*+\-.^_`|~0-9a-z]"
_LOWER_TOKENS: Final = re.compile(f"{_LOWER_TCHAR}++(?:\x00{_LOWER_TCHAR}++)*+")

ENVELOPE_HEADER_PREFIXES: Final = ("ce-", "acl-", "aclbus-")
"""Headers with these prefixes (and ``content-type``) may appear once in a message, in any
case: each says something about the message that one reader must not read differently from
another (who sent it, where replies go)."""


def is_envelope_header(name: str) -> bool:
    """Whether the lower-case header ``name`` may appear only once (`ENVELOPE_HEADER_PREFIXES`)."""
    return name.startswith(ENVELOPE_HEADER_PREFIXES) or name == "content-type"


def repeated_header_error(name: str, first: str, again: str) -> MalformedHeaders | None:
    """The error for header ``name`` (lower case) seen again, or None if that is allowed.

    A header of the envelope is refused whatever its values; an application header only
    when its values differ (once stripped): repeated with its value, it is read once. A
    ``nats-*`` header belongs to the server, which decode ignores, so its repeats too.
    """
    if is_envelope_header(name):
        return MalformedHeaders(
            _field(name),
            "given more than once (a header of the envelope appears once, in any case)",
        )
    if first != again and not name.startswith("nats-"):
        return MalformedHeaders(_field(name), "given twice with different values")
    return None


def header_name_error(shown: str) -> MalformedHeaders:
    """The error for a header name that is not a token; ``shown`` is it in printable ASCII."""
    return MalformedHeaders(
        _field(shown),
        "is not a valid header name (an RFC 7230 token: 1 or more ASCII letters, digits or "
        "!#$%&'*+-.^_`|~)",
    )


class ParsedHeaders(dict[str, str]):
    """Headers a backend read from a raw header block, with the first defect found in it.

    A mapping of names to values cannot show everything a block can hold: two lines of one
    name in one case (a dict keeps one value), a name that is not text (a dict has no key for
    it), a line that is no header. A backend that reads blocks itself returns this type and
    sets `defect` to the first such problem; `decode` then refuses the message with it. The
    mapping holds the headers as the backend's client library reads them (for NATS: the last
    of repeated names wins, invalid names are left out). A backend returning this type
    promises that, unless `defect` is set, every name in it is a token (`HEADER_TOKEN`):
    `decode` does not check them again.

    Attributes:
        defect: What is wrong with the block, or None.
    """

    defect: MalformedHeaders | None = None  # a class default: most blocks have none


def check_headers(headers: Mapping[str, str]) -> None:
    """Check ``headers`` against the rules of a header block, as `decode` does first.

    Raises:
        MalformedHeaders: A defect the backend found in the block (`ParsedHeaders`), a header
            of the envelope given more than once, another header given twice with different
            values, a name that is not a token, or a name or value that is not text.
    """
    if isinstance(headers, ParsedHeaders) and headers.defect is not None:
        raise _again(headers.defect)
    if headers:
        _normalized(headers, b"")


def _again(defect: MalformedHeaders) -> MalformedHeaders:
    """A fresh copy: the same headers may be decoded again (a dead letter read twice)."""
    return MalformedHeaders(defect.field, defect.problem)


def _fmt_time(value: datetime) -> str:
    """RFC 3339 in UTC with microseconds: ``2026-01-31T12:00:00.000000Z``.

    ``isoformat`` costs more than the rest of the envelope's headers together; messages made
    in the same second share the text up to the fraction, which is kept from the last one.
    """
    global _last_second
    if value.tzinfo is not UTC:
        value = as_utc(value)
    second = (value.second, value.minute, value.hour, value.day, value.month, value.year)
    last, prefix = _last_second
    if second != last:
        if value.year < 1000:  # strftime would not pad the year to four digits
            return value.isoformat(timespec="microseconds")[:-6] + "Z"
        prefix = value.strftime("%Y-%m-%dT%H:%M:%S.")
        _last_second = (second, prefix)
    return f"{prefix}{value.microsecond:06d}Z"


_last_second: tuple[tuple[int, ...], str] = ((), "")


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
    headers = {
        "ce-specversion": CE_SPECVERSION,
        "ce-id": f["message_id"],
        "ce-source": f["sender_id"],
        "ce-type": _TYPE_BY_PERFORMATIVE[f["performative"]],
        "ce-time": _fmt_time(f["timestamp"]),
        "content-type": codec.content_type,
        "acl-version": f["acl_version"],
    }
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
    if f["reply_by"] is not None:
        headers["acl-reply-by"] = _fmt_time(f["reply_by"])
    if f["hops"]:
        headers["acl-hops"] = str(f["hops"])
    if f["caused_by"]:
        headers["acl-caused-by"] = ",".join(f["caused_by"])
    for name, header in _TEXT_FIELD_HEADERS:
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


def encoded_size(headers: Mapping[str, str], body: bytes) -> int:
    r"""The size of a message on the NATS wire: body plus the header block.

    This is the ``<total bytes>`` of the ``HPUB`` frame, the number NATS' ``max_payload``
    limits: ``NATS/1.0\r\n``, then ``name: value\r\n`` per header, then ``\r\n``,
    then the body. Header names and values are counted in UTF-8 bytes.
    """
    text = "".join(headers) + "".join(headers.values())
    chars = len(text) if text.isascii() else len(text.encode(errors="replace"))
    return len(body) + 12 + 4 * len(headers) + chars


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
        raise _again(headers.defect)  # before "missing": a block of bad names only is empty
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
    h, size = _normalized(headers, body)
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
    fields["message_id"] = _message_id("ce-id", _required(h, "ce-id"))
    fields["sender_id"] = _id("ce-source", _required(h, "ce-source"))
    fields["performative"] = performative
    fields["acl_version"] = version
    ce_time = h.pop("ce-time", None)
    fields["timestamp"] = _time("ce-time", ce_time) if ce_time is not None else datetime.now(UTC)
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
                _field(name),
                "application header and extension names must be 1-128 of a-z, 0-9, '_', '-' "
                "(starting with a letter or digit) and values 1-1024 printable ASCII characters",
            )
        target[key] = value
    fields["extensions"] = extensions
    fields["headers"] = app_headers
    return trusted(fields)


def _normalized(headers: Mapping[str, str], body: bytes) -> tuple[dict[str, str], int]:
    """The headers, lower-case names and values without spaces or tabs around them, and size.

    The size is the message's as `encoded_size` counts it, without the ``nats-*`` headers.

    The usual headers (text, the names tokens, already lower case or only differing in case
    from no other, the values already stripped: what NATS clients deliver) take a few string
    operations on all of them at once; anything else is read header by header. The names of
    `ParsedHeaders` are not checked again: their backend checked them as it read the block.

    Raises:
        MalformedHeaders: A name or value that is not text, a name that is not a token, a
            header of the envelope given twice (ignoring case), another header given twice
            with different values.
    """
    try:
        names = "\x00".join(headers)
        values = "\x00".join(headers.values())
    except TypeError:
        return _normalized_slowly(headers, body)
    if (
        values.startswith((" ", "\t"))
        or values.endswith((" ", "\t"))
        or " \x00" in values
        or "\t\x00" in values
        or "\x00 " in values
        or "\x00\t" in values
    ):
        return _normalized_slowly(headers, body)
    if isinstance(headers, ParsedHeaders):
        lower = names.islower()
    elif names.count("\x00") != len(headers) - 1:  # a NUL in a name would pass for a separator
        return _normalized_slowly(headers, body)
    else:
        # Tokens, and in lower case, in one pass over the names (no more than islower costs).
        lower = _LOWER_TOKENS.fullmatch(names) is not None
        if not lower and _TOKENS.fullmatch(names) is None:
            return _normalized_slowly(headers, body)
    if lower:
        h = dict(headers)
    else:
        h = {k.lower(): v for k, v in headers.items()}
        if len(h) != len(headers):
            return _normalized_slowly(headers, body)
        names = names.lower()
    if not values.isascii():  # (tokens are ASCII)
        return h, _size(h, body)
    # encoded_size: body + 12 + 4 per header + the names' and values' characters (each joined
    # text holds n - 1 separators)
    n = len(h)
    size = len(body) + 14 + 2 * n + len(names) + len(values) if n else len(body) + 12
    if "nats-" in names:
        for k, v in h.items():
            if k.startswith("nats-"):
                size -= 4 + len(k) + len(v)
    return h, size


def _normalized_slowly(headers: Mapping[str, str], body: bytes) -> tuple[dict[str, str], int]:
    h: dict[str, str] = {}
    for k, v in headers.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise MalformedHeaders(_field(_shown(str(k))), "header names and values must be text")
        if HEADER_TOKEN.fullmatch(k) is None:
            raise header_name_error(_shown(k))
        key = k.lower()
        value = v.strip(" \t")
        first = h.get(key)
        if first is None:
            h[key] = value
            continue
        error = repeated_header_error(key, first, value)
        if error is not None:
            raise error
    return h, _size(h, body)


def _shown(name: str) -> str:
    r"""``name`` in printable ASCII, other characters escaped (``\x00``, ``\xf6``).

    An error names the header without carrying control characters into logs.
    """
    if name.isascii() and name.isprintable():
        return name
    return "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode() for c in name)


def _size(h: dict[str, str], body: bytes) -> int:
    """`encoded_size` without the ``nats-*`` headers (which the broker or backend adds)."""
    if "nats-" in "\x00".join(h):
        h = {k: v for k, v in h.items() if not k.startswith("nats-")}
    return encoded_size(h, body)


def _id(header: str, value: str) -> str:
    return _checked(header, value, validate_id)


def _message_id(header: str, value: str) -> str:
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


def _time(header: str, raw: str) -> datetime:
    if _CANONICAL_TIME.fullmatch(raw):  # what aclbus writes: fromisoformat reads it as is
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            pass  # a day or hour out of range: the general way below names the header
    match = _RFC3339.fullmatch(raw)
    try:
        if match is None:
            raise ValueError(raw)
        date, clock, fraction, zone = match.groups()
        zone = "+00:00" if zone in ("Z", "z") else zone
        # Python keeps microseconds: cut longer fractions (Go writes nanoseconds).
        value = datetime.fromisoformat(f"{date}T{clock}{(fraction or '')[:7]}{zone}")
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ACLDecodeError(
            header,
            "must be an RFC 3339 date-time with a zone, like 2026-01-31T12:00:00.000000Z, "
            f"got {raw[:40]!r}",
        ) from None


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
_TEXT_FIELD_HEADERS: Final = tuple(_TEXT_FIELDS.items())

# The optional envelope headers: header -> (field, parser(header, value)).
_PARSERS: Final[dict[str, tuple[str, Callable[[str, str], Any]]]] = {
    **{
        header: (name, _message_id if name in ONE_OFF_ID_FIELDS else _id)
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
    "acl-reply-by": ("reply_by", _time),
}


def _field(name: str) -> str:
    """A header name fit to name the field of an error: cut, and never empty."""
    return name[:64] if name else "headers (an empty header name)"


def _required(h: dict[str, str], header: str) -> str:
    value = h.pop(header, None)
    if value is None:
        raise ACLDecodeError(header, "missing (required header)")
    return value
