"""Which hosts a webhook may name (``ACLBUS_GATEWAY__WEBHOOK_HOSTS``): the guard against SSRF."""

from __future__ import annotations

from fnmatch import fnmatchcase
from urllib.parse import urlsplit

__all__ = ["host_allowed"]


def host_allowed(url: str, patterns: list[str]) -> bool:
    """Whether ``url``'s host matches one of ``patterns`` (any host when there are none).

    Args:
        url: An http or https URL.
        patterns: ``fnmatch`` patterns, compared in lower case (``*.example.com``).
    """
    if not patterns:
        return True
    host = (urlsplit(url).hostname or "").lower()
    return any(fnmatchcase(host, pattern.lower()) for pattern in patterns)
