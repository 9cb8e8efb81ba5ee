"""Subjects as the engine checks them: publish subjects, filters, and how patterns relate.

NATS rules: tokens are separated by ``.``, none is empty and none holds whitespace; a filter may
use ``*`` for one token and ``>`` (last) for one or more; a publish subject has no wildcard.
"""

from __future__ import annotations

from aclbus.errors import InvalidIdentifier

__all__ = ["check_filter", "check_subject", "covers", "overlaps"]

# Nearly every subject on the hot path was seen before: remember the good ones.
_known_subjects: set[str] = set()
_known_filters: set[str] = set()
_KNOWN_CAP = 100_000


def _problem(subject: object, *, wildcards: bool) -> str | None:
    if not isinstance(subject, str) or not subject:
        return "expected a non-empty dotted string"
    tokens = subject.split(".")
    last = len(tokens) - 1
    for i, token in enumerate(tokens):
        if not token:
            return f"token {i + 1} is empty"
        if any(ch.isspace() for ch in token):
            return "whitespace is not allowed"
        if token in ("*", ">"):
            if not wildcards:
                return f"wildcard {token!r} is only allowed in a subscription"
            if token == ">" and i != last:
                return "'>' is only allowed as the last token"
    return None


def check_subject(subject: str) -> str:
    """Return ``subject`` if messages can be published to it.

    Raises:
        InvalidIdentifier: Empty, an empty token, whitespace, or a wildcard.
    """
    if subject in _known_subjects:
        return subject
    problem = _problem(subject, wildcards=False)
    if problem is not None:
        raise InvalidIdentifier("subject", subject, problem)
    if len(_known_subjects) < _KNOWN_CAP:
        _known_subjects.add(subject)
    return subject


def check_filter(pattern: str, kind: str = "subject filter") -> str:
    """Return ``pattern`` if it is a valid subscription subject (wildcards allowed).

    Raises:
        InvalidIdentifier: Empty, an empty token, whitespace, or ``>`` before the end.
    """
    if pattern in _known_filters:
        return pattern
    problem = _problem(pattern, wildcards=True)
    if problem is not None:
        raise InvalidIdentifier(kind, pattern, problem)
    if len(_known_filters) < _KNOWN_CAP:
        _known_filters.add(pattern)
    return pattern


def overlaps(a: str, b: str) -> bool:
    """Whether some subject matches both patterns ``a`` and ``b``."""
    at, bt = a.split("."), b.split(".")
    for i in range(max(len(at), len(bt))):
        x = at[i] if i < len(at) else None
        y = bt[i] if i < len(bt) else None
        if x == ">":
            return y is not None
        if y == ">":
            return x is not None
        if x is None or y is None:
            return False
        if x != "*" and y != "*" and x != y:
            return False
    return True


def covers(outer: str, inner: str) -> bool:
    """Whether every subject that matches pattern ``inner`` also matches pattern ``outer``."""
    ot, it = outer.split("."), inner.split(".")
    for i, o in enumerate(ot):
        if o == ">":
            return i < len(it)
        if i >= len(it):
            return False
        x = it[i]
        if x == ">" or (o != "*" and o != x):
            return False
    return len(ot) == len(it)
