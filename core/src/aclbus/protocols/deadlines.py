"""The deadline of each protocol step: checked once, sent as the act's ``reply_by``."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Final

from aclbus.protocols.errors import InvalidDeadline

__all__ = ["MAX_DEADLINE", "check_deadline", "reply_by"]

MAX_DEADLINE: Final = 7 * 24 * 3600.0
"""The longest deadline of a step, in seconds (a week): longer is a mistake, not a plan."""


def check_deadline(name: str, value: object) -> float:
    """Return ``value`` as seconds if it is a usable deadline.

    Args:
        name: The parameter's name, for the error.
        value: The candidate: an int or float, finite, above 0, at most `MAX_DEADLINE`.

    Raises:
        InvalidDeadline: It is not.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidDeadline(name, value)
    seconds = float(value)
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_DEADLINE):
        raise InvalidDeadline(name, value)
    return seconds


def reply_by(seconds: float) -> datetime:
    """The ``reply_by`` of a step that must be answered within ``seconds``."""
    return datetime.now(UTC) + timedelta(seconds=seconds)
