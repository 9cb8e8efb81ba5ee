"""aclbus-tls.

TLS and mutual TLS for every backend's connection, configured once (SPEC R9, R11).
"""

from __future__ import annotations

__all__: list[str] = []
