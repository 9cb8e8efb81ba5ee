"""The rules of a header block: names that are tokens, headers of the envelope given once.

A header block is read as names and values; `normalized_headers` reads one as `decode` needs
it (names in lower case, values stripped, the size counted) and refuses one that breaks the
rules with `MalformedHeaders`. A backend that reads raw blocks itself uses the same rules
(`is_envelope_header`, `repeated_header_error`, `header_name_error`) and hands over what a
mapping cannot show in `ParsedHeaders`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from aclbus.errors import MalformedHeaders
from aclbus.wire.parsed_headers import ParsedHeaders
from aclbus.wire.size import encoded_size

__all__ = [
    "ENVELOPE_HEADER_PREFIXES",
    "HEADER_TOKEN",
    "ParsedHeaders",
    "check_headers",
    "defect_error",
    "error_field",
    "header_name_error",
    "is_envelope_header",
    "normalized_headers",
    "repeated_header_error",
]

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
            error_field(name),
            "given more than once (a header of the envelope appears once, in any case)",
        )
    if first != again and not name.startswith("nats-"):
        return MalformedHeaders(error_field(name), "given twice with different values")
    return None


def header_name_error(shown: str) -> MalformedHeaders:
    """The error for a header name that is not a token; ``shown`` is it in printable ASCII."""
    return MalformedHeaders(
        error_field(shown),
        "is not a valid header name (an RFC 7230 token: 1 or more ASCII letters, digits or "
        "!#$%&'*+-.^_`|~)",
    )


def check_headers(headers: Mapping[str, str]) -> None:
    """Check ``headers`` against the rules of a header block, as `decode` does first.

    Raises:
        MalformedHeaders: A defect the backend found in the block (`ParsedHeaders`), a header
            of the envelope given more than once, another header given twice with different
            values, a name that is not a token, or a name or value that is not text.
    """
    if isinstance(headers, ParsedHeaders) and headers.defect is not None:
        raise defect_error(headers.defect)
    if headers:
        normalized_headers(headers, b"")


def defect_error(defect: MalformedHeaders) -> MalformedHeaders:
    """The error to raise for the ``defect`` of a `ParsedHeaders`: a fresh copy.

    The same headers may be decoded again (a dead letter read twice).
    """
    return MalformedHeaders(defect.field, defect.problem)


def error_field(name: str) -> str:
    """A header name fit to name the field of an error: cut, and never empty."""
    return name[:64] if name else "headers (an empty header name)"


def normalized_headers(headers: Mapping[str, str], body: bytes) -> tuple[dict[str, str], int]:
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


def _normalized_slowly(headers: Mapping[Any, Any], body: bytes) -> tuple[dict[str, str], int]:
    # Mapping[Any, Any]: the names and values are what the caller handed over, and checked
    # here one by one (compiled by mypyc, Mapping[str, str] would refuse a non-text value with
    # its own TypeError before this can name the header).
    h: dict[str, str] = {}
    for k, v in headers.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise MalformedHeaders(
                error_field(_shown(str(k))), "header names and values must be text"
            )
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
