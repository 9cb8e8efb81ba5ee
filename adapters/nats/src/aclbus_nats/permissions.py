"""Permission violations as immediate errors.

nats-server answers a forbidden publish or subscribe with an asynchronous ``-ERR`` that
nats-py only hands to ``error_cb``; the publish itself would just time out, and a forbidden
subscription would stay silently empty. The backend reports every ``error_cb`` error here; a
violation fails the operation waiting on that subject at once with `PermissionDenied`.

The hot path (publishes and requests) registers nothing per call: the backend keeps its
pending PubAcks and replies anyway, and a listener (`PermissionWatch.listen`) fails the ones on
the refused subject. `PermissionWatch.guard` is for the rarer JetStream API calls.

nats-py lower-cases the server's error text, subject included, so subjects are matched without
regard to case: a violation on ``a.agent.Bob`` also fails an operation waiting on ``a.agent.bob``
(both are refused by the server anyway, or one of them is retried).

FastStream's error callback logs every error nats-py reports as "Connection broken", with a
traceback; a violation breaks nothing, so `ViolationLogFilter` keeps those records out and the
backend logs each violation once itself.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aclbus.errors import PermissionDenied

__all__ = [
    "Interrupted",
    "PermissionWatch",
    "ViolationListener",
    "ViolationLogFilter",
    "is_violation",
]

T = TypeVar("T")

_VIOLATION = re.compile(r'permissions violation for (publish|subscription) to "([^"]+)"', re.I)


ViolationListener = Callable[[str, str], None]
"""Called with ``(operation, subject)`` for each violation: ``"publish"`` or ``"subscribe"``,
and the subject as nats-py reports it (lower-cased)."""


def is_violation(exc: BaseException) -> bool:
    """Whether ``exc`` is nats-py's report of a permissions violation (``-ERR`` from the server)."""
    return _VIOLATION.search(str(exc)) is not None


class ViolationLogFilter(logging.Filter):
    """Drops log records that carry a permissions violation as their exception.

    FastStream's error callback logs each error nats-py hands it as a broken connection, with
    the error as ``exc_info``; for a violation the connection is fine and the waiting call
    already fails with `PermissionDenied`. Records about anything else pass unchanged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a record whose ``exc_info`` is a permissions violation."""
        exc = record.exc_info[1] if record.exc_info else None
        return exc is None or not is_violation(exc)


class Interrupted(Exception):
    """`PermissionWatch.guard` gave up on its operation because ``interrupt`` completed."""


class PermissionWatch:
    """Matches the server's permission violations to the operations waiting for them."""

    def __init__(self) -> None:
        self._waiting: dict[tuple[str, str], set[asyncio.Future[None]]] = {}
        self._denied_subscriptions: set[str] = set()
        self._listeners: list[ViolationListener] = []

    def listen(self, listener: ViolationListener) -> None:
        """Call ``listener(operation, subject)`` for every violation observed from now on."""
        self._listeners.append(listener)

    def observe(self, exc: BaseException) -> bool:
        """Take an error from ``error_cb``; True if it was a permission violation."""
        match = _VIOLATION.search(str(exc))
        if match is None:
            return False
        op = "publish" if match.group(1).lower() == "publish" else "subscribe"
        subject = match.group(2).lower()
        if op == "subscribe":
            self._denied_subscriptions.add(subject)
        for key in [k for k in self._waiting if k[0] == op and _covers(k[1], subject)]:
            for future in self._waiting.pop(key):
                if not future.done():
                    future.set_exception(PermissionDenied(op, match.group(2)))
        for listener in self._listeners:
            listener(op, subject)
        return True

    async def guard(
        self,
        op: str,
        subject: str,
        operation: Awaitable[T],
        *,
        interrupt: asyncio.Future[None] | None = None,
    ) -> T:
        """Await ``operation``, failing at once if the server denies ``op`` on ``subject``.

        ``subject`` may end with ``.>`` to guard every subject under a prefix, such as
        ``$JS.API.>`` for the JetStream API requests an operation makes. If ``interrupt``
        completes first, the operation is cancelled and `Interrupted` raised.
        """
        denied: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        key = (op, subject.lower())
        self._waiting.setdefault(key, set()).add(denied)
        task = asyncio.ensure_future(operation)
        waits: tuple[asyncio.Future[Any], ...] = (task, denied)
        if interrupt is not None:
            waits += (interrupt,)
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if interrupt is not None and interrupt.done() and not task.done():
                raise Interrupted(f"{op} on {subject!r}")
            if denied.done() and not task.done():
                task.cancel()
                server_error = denied.exception()  # PermissionDenied on the server's subject
                if subject.endswith(".>") and server_error is not None:
                    raise server_error
                raise PermissionDenied(op, subject)  # the subject as the caller wrote it
            return task.result()
        finally:
            waiting = self._waiting.get(key)
            if waiting is not None:
                waiting.discard(denied)
                if not waiting:
                    del self._waiting[key]
            if not denied.done():
                denied.cancel()
            if not task.done():
                task.cancel()

    def check_subscribe(self, subject: str) -> None:
        """Raise `PermissionDenied` if the server refused a subscription to ``subject``."""
        key = subject.lower()
        if key in self._denied_subscriptions:
            self._denied_subscriptions.discard(key)
            raise PermissionDenied("subscribe", subject)


def _covers(pattern: str, subject: str) -> bool:
    """``pattern`` is ``subject`` itself, or a ``prefix.>`` that ``subject`` falls under."""
    if pattern.endswith(".>"):
        return subject.startswith(pattern[:-1])
    return pattern == subject
