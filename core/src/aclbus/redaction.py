"""`redact`: text that may hold a secret, made safe for a log line, an error or a header.

Error texts and header values chosen by senders reach logs, dead letters and answers; a
connection URL or an exception's message may carry a password. Everything that writes such
text passes it through `redact` first.
"""

from __future__ import annotations

import re

__all__ = ["MAX_TEXT", "redact"]

MAX_TEXT = 500
"""The longest text `redact` returns by default."""

_SECRETS = (
    (re.compile(r"(\w+://)[^/@\s:]+:[^/@\s]+@"), r"\1***@"),  # URL credentials
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 ***"),  # auth schemes
    (
        re.compile(
            r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|authorization)(\s*[=:]\s*)"
            r"(?!(?:bearer|basic) \*\*\*)\S+"
        ),
        r"\1\2***",
    ),
)


def redact(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` with credentials masked, cut to ``limit`` and made header-safe.

    Masked: URL credentials (``user:pw@``), ``password=…``-like pairs, ``Bearer …`` tokens.
    The result is one line of printable ASCII, as a header value must be.
    """
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    text = "".join(ch if 32 <= ord(ch) < 127 else " " for ch in text).strip()
    return text[:limit] or "-"
