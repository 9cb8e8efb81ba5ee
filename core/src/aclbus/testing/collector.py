"""Waiting for things to happen, with a bound: `Collector`, `Deliveries` and `eventually`.

Every wait in the conformance kit is bounded in wall-clock time (`DEFAULT_TIMEOUT`) so that a
backend that never delivers fails the test instead of hanging it. None of these helpers lets
time pass on a backend's clock: that is `BackendConfig.advance`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Generic, Literal, TypeVar

from aclbus.backend import Received

__all__ = ["DEFAULT_TIMEOUT", "Collector", "Deliveries", "eventually"]

T = TypeVar("T")

DEFAULT_TIMEOUT = 5.0
"""Seconds of wall-clock time any single wait in the kit may take before the test fails."""

_POLL_INTERVAL = 0.005


class Collector(Generic[T]):
    """Gathers items (deliveries, messages, events) and lets a test wait for a count of them.

    Use `add` from a handler, then ``await collector.wait_for(3)`` in the test.

    Attributes:
        items: Everything added so far, in the order it was added.
    """

    def __init__(self) -> None:
        self.items: list[T] = []
        self._changed = asyncio.Event()

    def add(self, item: T) -> None:
        """Record ``item`` and wake whoever waits."""
        self.items.append(item)
        self._changed.set()

    def __len__(self) -> int:
        return len(self.items)

    async def wait_for(self, count: int, *, timeout: float = DEFAULT_TIMEOUT) -> list[T]:
        """Wait until at least ``count`` items were added; return a copy of all of them.

        Args:
            count: How many items to wait for.
            timeout: Wall-clock seconds to wait at most.

        Raises:
            AssertionError: Fewer than ``count`` items arrived within ``timeout``.
        """

        async def _wait() -> None:
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(_wait(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"expected {count} item(s) within {timeout:g} s, got {len(self.items)}: "
                f"{self.items!r:.500}"
            ) from None
        return list(self.items)


Settle = Literal["ack", "nack", "term"]


class Deliveries(Collector[Received]):
    """A backend `DeliveryHandler` that records each delivery and settles it as told.

    Args:
        settle: How to settle each delivery: ``"ack"``, ``"nack"`` (at once), ``"term"``, or
            None to leave it unsettled (the test settles it, or lets ``ack_wait`` run out).

    Example:
        ```python
        got = Deliveries()
        await backend.subscribe(SubscriptionSpec(subject), got)
        await backend.publish(subject, {}, b"x")
        [first] = await got.wait_for(1)
        ```
    """

    def __init__(self, settle: Settle | None = "ack") -> None:
        super().__init__()
        self.settle = settle

    async def __call__(self, received: Received) -> None:
        """Record ``received``, yield to the event loop once, then settle it per `settle`.

        The yield makes it behave like a real handler, which awaits I/O: a backend that
        redelivers without end (a broken ``max_deliver``) then fails the test's bounded wait
        instead of starving the event loop and hanging the run.
        """
        self.add(received)
        await asyncio.sleep(0)
        if self.settle == "ack":
            await received.ack()
        elif self.settle == "nack":
            await received.nack()
        elif self.settle == "term":
            await received.term("settled by the conformance kit")

    @property
    def bodies(self) -> list[bytes]:
        """The bodies received, in delivery order."""
        return [r.body for r in self.items]

    @property
    def attempts(self) -> list[int]:
        """The delivery attempt of each delivery, in delivery order."""
        return [r.attempt for r in self.items]


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    what: str = "condition",
) -> None:
    """Wait until ``check()`` returns true, polling it; fail the test if it never does.

    Args:
        check: A predicate, plain or async.
        timeout: Wall-clock seconds to wait at most.
        what: What is awaited, for the failure message.

    Raises:
        AssertionError: ``check()`` stayed false for ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout:g} s")
        await asyncio.sleep(_POLL_INTERVAL)
