"""The user's callbacks (perform, decide, bid, select): calling them, and what their errors send."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from aclbus.dlq import redact
from aclbus.protocols.errors import ProtocolFailure, Refused

__all__ = ["error_payload", "resolve"]


async def resolve(func: Callable[..., Any], *args: Any) -> Any:
    """Call a user callback that may be plain or async; return its result."""
    result = func(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


def error_payload(exc: BaseException) -> dict[str, Any]:
    """The payload of a ``refuse``/``failure`` sent because a callback raised ``exc``."""
    if isinstance(exc, Refused | ProtocolFailure):
        return {"reason": exc.reason or "unspecified"}
    if isinstance(exc, TimeoutError):
        return {"reason": "timeout"}
    # An exception's text may hold a credential: mask it before it leaves the agent.
    return {"reason": "error", "error": type(exc).__name__, "message": redact(str(exc))}
