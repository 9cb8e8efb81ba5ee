"""The times of the envelope (``ce-time``, ``acl-reply-by``) as RFC 3339 text, and back."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

from aclbus.acl import as_utc
from aclbus.errors import ACLDecodeError

__all__ = ["format_time", "parse_time"]

# RFC 3339 date-time (section 5.6): 'T', 't' or ' ' between date and time, any fraction, Z or
# an offset. Digits are ASCII only.
_RFC3339: Final = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}:[0-9]{2}:[0-9]{2})(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
# The form `format_time` writes: UTC, microseconds.
_CANONICAL_TIME: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z"
)


def format_time(value: datetime) -> str:
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


def parse_time(header: str, raw: str) -> datetime:
    """The time ``raw`` of ``header``, in UTC: any RFC 3339 date-time with a zone.

    Raises:
        ACLDecodeError: ``raw`` is no such date-time, or one out of range.
    """
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
