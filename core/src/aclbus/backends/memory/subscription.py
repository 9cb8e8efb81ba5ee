"""Subscriptions: worker tasks that take deliveries from a source and call the handler.

A source is a consumer (``at_least_once``, possibly shared by several subscriptions) or a core
inbox (``at_most_once``). Workers pull: a free worker takes the next delivery at once if there
is one, else it waits in the source's queue of waiters. No task is made per message.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from aclbus.backend import DeliveryHandler, Received, Subscription, SubscriptionSpec

__all__ = ["DeliverySource", "MemorySubscription"]

_log = logging.getLogger("aclbus.backends.memory")
_TURN = 16
"""Deliveries a worker handles before it lets the rest of the event loop run."""


class DeliverySource(Protocol):
    """Where a subscription's workers get their deliveries (`Consumer` or `CoreInbox`)."""

    @property
    def shared(self) -> bool:
        """Whether other subscriptions' workers take from it too."""

    @property
    def waiters(self) -> deque[asyncio.Future[Received | None]]:
        """Workers waiting for a delivery, first come first served."""

    def take(self) -> Received | None:
        """The next delivery, or None if there is none now."""

    def release(self, delivery: Received) -> None:
        """Take back a delivery that a stopped worker never handed to its handler."""

    def attach(self, subscription: object) -> None:
        """A subscription starts taking from this source."""

    def detach(self, subscription: object) -> None:
        """A subscription stops taking from this source."""


class MemorySubscription(Subscription):
    """A subscription of the memory engine: ``spec.concurrency`` workers calling the handler.

    Args:
        spec: What was subscribed to.
        handler: Called with each delivery.
        source: Where the deliveries come from.
        on_end: Called once when the subscription stops, to forget it.
        stream: The stream of its consumer (``at_least_once``), or None.
        consumer: The name of its consumer (``at_least_once``), or None.
    """

    def __init__(
        self,
        spec: SubscriptionSpec,
        handler: DeliveryHandler,
        source: DeliverySource,
        *,
        on_end: Callable[[MemorySubscription], None],
        stream: str | None = None,
        consumer: str | None = None,
    ) -> None:
        self.spec = spec
        self._handler = handler
        self._source = source
        self._on_end = on_end
        self._stream = stream
        self._consumer = consumer
        self._active = True
        self._idle: set[asyncio.Future[Received | None]] = set()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def active(self) -> bool:
        """False once unsubscribed or once the backend closed."""
        return self._active

    @property
    def stream(self) -> str | None:
        """The stream its consumer reads (``at_least_once``), or None."""
        return self._stream

    @property
    def consumer(self) -> str | None:
        """The name of its consumer (``at_least_once``), for `MemoryBackend.consumer_info`."""
        return self._consumer

    def start(self) -> None:
        """Bind to the source and start the workers."""
        self._source.attach(self)
        label = f"aclbus-memory:{self.spec.subject}"
        self._tasks = [
            asyncio.create_task(self._work(), name=f"{label}#{i}")
            for i in range(self.spec.concurrency)
        ]

    async def unsubscribe(self) -> None:
        """Stop delivery at once; wait for the handlers already running to return.

        Unacked deliveries of a durable consumer are redelivered after their ack timeout to
        whichever subscription is bound to it then.
        """
        if not self._active:
            return
        self._stop()
        current = asyncio.current_task()
        running = [t for t in self._tasks if t is not current and not t.done()]
        if running:
            await asyncio.wait(running)

    def abort(self) -> list[asyncio.Task[None]]:
        """Stop and cancel the workers, running handlers included; return them to await."""
        if self._active:
            self._stop()
        current = asyncio.current_task()
        running = [t for t in self._tasks if t is not current and not t.done()]
        for task in running:
            task.cancel()
        return running

    def _stop(self) -> None:
        self._active = False
        for waiter in list(self._idle):
            if not waiter.done():
                waiter.set_result(None)
        self._source.detach(self)
        self._on_end(self)

    async def _work(self) -> None:
        source = self._source
        handler = self._handler
        idle = self._idle
        loop = asyncio.get_running_loop()
        alone = self.spec.concurrency == 1
        turn = 0
        while self._active:
            delivery = source.take()
            if delivery is None:
                waiter: asyncio.Future[Received | None] = loop.create_future()
                source.waiters.append(waiter)
                idle.add(waiter)
                try:
                    delivery = await waiter
                except asyncio.CancelledError:
                    if waiter.done() and not waiter.cancelled():
                        handed = waiter.result()
                        if handed is not None:
                            source.release(handed)
                    raise
                finally:
                    idle.discard(waiter)
                if delivery is None:
                    return
                if not self._active:
                    source.release(delivery)
                    return
            try:
                await handler(delivery)
            except Exception:
                # The handler owns settlement; an unsettled delivery is redelivered later.
                _log.exception(
                    "handler of the subscription to %r failed on a delivery of %r (attempt %d)",
                    self.spec.subject,
                    delivery.subject,
                    delivery.attempt,
                )
            # Yield after each delivery to a worker that competes with others (a queue group,
            # several workers): they get their turn even if handlers never await. Alone, only
            # every few deliveries: a handler that never awaits (nack without delay, no
            # max_deliver) would otherwise spin on its own redeliveries and starve the loop,
            # but a turn of the event loop (a poll of its selector included) costs about as
            # much as a small message's whole delivery.
            turn += 1
            if turn == _TURN or not alone or source.shared:
                turn = 0
                await asyncio.sleep(0)
