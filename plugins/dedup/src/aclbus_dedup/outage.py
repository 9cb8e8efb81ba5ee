"""How the plugin waits out a KV bucket that does not answer.

`Outage`: whether the bucket is out of reach and since when (logged once when it goes and once
when it comes back), the pauses between two attempts (doubling up to a cap, on the engine's
clock so that a test's `ManualClock` drives them), and the stop signal that cuts them short
when the bus stops. `KeepAlive`: while a delivery waits for the bucket, ``in_progress()`` at
intervals, so that the broker neither redelivers it nor counts another delivery attempt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType

from aclbus.backend import Received
from aclbus.dlq import redact

__all__ = ["KeepAlive", "Outage", "Sleep"]

log = logging.getLogger("aclbus.dedup")

Sleep = Callable[[float], Awaitable[None]]
"""``await sleep(seconds)`` on some clock."""


class Outage:
    """The reachability of one claims bucket, as this bus sees it, and how to wait for it.

    Args:
        bucket: The bucket's name (for the log).
        now: Wall-clock seconds (the engine's clock on the memory backend).
        sleep: Waits on that same clock.
        first: Seconds of the first pause between two attempts.
        cap: Longest pause.
    """

    def __init__(
        self,
        bucket: str,
        *,
        now: Callable[[], float],
        sleep: Sleep = asyncio.sleep,
        first: float = 0.1,
        cap: float = 2.0,
    ) -> None:
        self.bucket = bucket
        self.now = now
        self.sleep = sleep
        self.first = first
        self.cap = cap
        self.since: float | None = None
        """When the current outage began (its first failed call), or None while reachable."""
        self._stopped = asyncio.Event()

    def failed(self, exc: BaseException) -> float:
        """A call to the bucket failed with ``exc``; when the outage it belongs to began."""
        if self.since is None:
            self.since = self.now()
            log.warning(
                "dedup: the KV bucket %s is out of reach (%s: %s): deliveries wait for it, "
                "kept with in_progress() so that no delivery attempt is spent, and their "
                "claims are retried",
                self.bucket,
                type(exc).__name__,
                redact(str(exc)),
            )
        return self.since

    def answered(self) -> None:
        """A call to the bucket succeeded: an outage, if there was one, is over."""
        if self.since is not None:
            lasted, self.since = self.now() - self.since, None
            log.warning("dedup: the KV bucket %s answers again after %.1f s", self.bucket, lasted)

    @property
    def stopped(self) -> bool:
        """True once `stop` was called: no more pauses, every retry loop gives up."""
        return self._stopped.is_set()

    def stop(self) -> None:
        """End every pause now and refuse new ones (the bus is stopping)."""
        self._stopped.set()

    def pauses(self) -> Iterator[float]:
        """``first``, twice that, ... up to ``cap``, without end."""
        pause = self.first
        while True:
            yield min(pause, self.cap)
            pause *= 2

    async def pause(self, seconds: float) -> bool:
        """Wait ``seconds``; False at once, or as soon as the bus stops."""
        if self.stopped:
            return False
        # Two tasks per pause, only while the bucket is out of reach: never on the path of a
        # delivery whose KV calls succeed.
        sleeping = asyncio.ensure_future(self.sleep(seconds))
        stopping = asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait((sleeping, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            stopping.cancel()
        return not self.stopped


class KeepAlive:
    """An async context that sends ``in_progress()`` for a delivery every ``every`` seconds.

    One right away (the delivery's ack timer has been running since it arrived), then at
    intervals until the context ends. A failed ``in_progress`` (the connection is down too) is
    ignored: at worst the broker redelivers the message, and its claim still stops a second
    run.

    Args:
        received: The delivery to keep.
        every: Seconds between two ``in_progress()`` calls (well below ``ack_wait``).
        sleep: Waits on the engine's clock.
    """

    def __init__(self, received: Received, every: float, sleep: Sleep) -> None:
        self.received = received
        self.every = every
        self.sleep = sleep
        self._task: asyncio.Future[None] | None = None

    async def _beat(self) -> None:
        try:
            await self.received.in_progress()
        except Exception as exc:
            log.debug("dedup: in_progress() failed while waiting for the KV bucket: %r", exc)

    async def _run(self) -> None:
        while True:
            await self.sleep(self.every)
            await self._beat()

    async def __aenter__(self) -> KeepAlive:
        await self._beat()
        self._task = asyncio.ensure_future(self._run())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()  # not awaited: an in_progress() cut short is harmless
