"""aclbus-tracing.

OpenTelemetry traces across agents (SPEC R15, R11).
"""

from __future__ import annotations

__all__: list[str] = []
