"""Batch handlers: one call of the handler for up to ``max_messages`` messages.

`Agent.on_batch` registers a handler that takes a list of messages. Each message is routed,
decoded and checked as for any handler; instead of calling the handler, the bus hands it to
the route's `Batcher`, which collects messages until it has ``max_messages`` or the oldest has
waited ``max_wait`` seconds, then calls the handler once with all of them. Every message is
settled on its own afterwards: acknowledged, or failed as a handler's error fails it (the
retry policy, the dead-letter queue), unless the handler settled it itself.

Consume middleware still sees every message on its own: each message of a batch runs through
the chain, and the innermost step waits for the batch's call. With no consume middleware the
batch goes straight to the handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

from aclbus.acl import ACLMessage
from aclbus.bus_core import BusCore
from aclbus.handling import Delivery, Handler

__all__ = ["MAX_BATCH", "Batcher"]

log = logging.getLogger("aclbus")

MAX_BATCH = 1000
"""The largest ``max_messages``: a JetStream consumer delivers at most this many messages that
are not acknowledged yet (its ``max_ack_pending``), so a larger batch could never fill."""

_BACKLOG = 2
"""Batches' worth of messages a batcher holds before the subscriptions feeding it wait."""


class Batcher:
    """Collects the messages of one batch handler and calls it with each batch.

    One batch is handled at a time, in the order the messages came; the next batch collects
    while the handler runs. When ``max_messages`` times `_BACKLOG` messages wait, delivery to
    the agent waits too, so a slow handler holds messages back at the broker rather than in
    memory.

    Args:
        bus: The bus.
        agent: The id of the agent whose handler this is.
        func: The handler: ``async def h(msgs)`` or ``async def h(msgs, deliveries)``.
        takes_delivery: Whether it takes the deliveries too.
        max_messages: Messages per call at most.
        max_wait: Seconds the first message of a batch waits for more at most.
    """

    def __init__(
        self,
        bus: BusCore,
        agent: str,
        func: Handler,
        takes_delivery: bool,
        max_messages: int,
        max_wait: float,
    ) -> None:
        self.bus = bus
        self.agent = agent
        self.func = func
        self.takes_delivery = takes_delivery
        self.max_messages = max_messages
        self.max_wait = max_wait
        self._waiting: deque[tuple[Delivery, float]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._room = asyncio.Event()
        self._room.set()
        self._draining = False
        # the batch in the consume middleware: its results, who reached the handler, and how
        # many have neither reached it nor left the chain yet
        self._results: dict[Delivery, asyncio.Future[ACLMessage | None]] = {}
        self._arrived: set[Delivery] = set()
        self._outstanding = 0
        self._all_in: asyncio.Event | None = None

    @property
    def waiting(self) -> int:
        """Messages collected and not handed to the handler yet."""
        return len(self._waiting)

    async def add(self, delivery: Delivery) -> None:
        """Take a routed delivery for the next batch (waits while too many are waiting)."""
        loop = asyncio.get_running_loop()
        self._waiting.append((delivery, loop.time()))
        if len(self._waiting) >= self.max_messages:
            self._start()
        elif self._timer is None and self._task is None:
            self._timer = loop.call_later(self.max_wait, self._due)
        if len(self._waiting) >= self.max_messages * _BACKLOG:
            self._room.clear()
            await self._room.wait()

    async def drain(self) -> None:
        """Handle every message still waiting now, without waiting for more.

        A handler still running after the bus' ``ack_wait`` is cancelled; the messages of its
        batch and those behind it are handed back to the broker for redelivery.
        """
        self._draining = True
        try:
            if self._waiting:
                self._start()
            task = self._task
            if task is not None:
                done, _ = await asyncio.wait({task}, timeout=self.bus.settings.ack_wait)
                if not done:
                    log.warning(
                        "agent %s: batch handler %s still running after %g s: cancelling it "
                        "(its messages are redelivered)",
                        self.agent,
                        self.func.__qualname__,
                        self.bus.settings.ack_wait,
                    )
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            while self._waiting:
                received = self._waiting.popleft()[0].received
                if received.settled is None:
                    with contextlib.suppress(Exception):  # closed: redelivered after ack_wait
                        await received.nack()
        finally:
            self._draining = False
            self._room.set()

    def _due(self) -> None:
        self._timer = None
        if self._waiting:
            self._start()

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"aclbus-batch-{self.agent}-{self.func.__qualname__}"
            )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                due = self._waiting[0][1] + self.max_wait
                if (
                    len(self._waiting) < self.max_messages
                    and loop.time() < due
                    and not self._draining
                ):
                    self._timer = loop.call_at(due, self._due)
                    break
                count = min(self.max_messages, len(self._waiting))
                batch = [self._waiting.popleft()[0] for _ in range(count)]
                if len(self._waiting) < self.max_messages * _BACKLOG:
                    self._room.set()
                try:
                    await self._handle(batch)
                except Exception:  # a bug here must not strand the messages behind it
                    log.exception("agent %s: batch of %d failed", self.agent, len(batch))
        finally:
            self._task = None
            self._room.set()

    async def _handle(self, batch: list[Delivery]) -> None:
        pipeline = self.bus.consume_pipeline
        if not pipeline.has_middleware:
            ready = [d for d in batch if await pipeline.typed(d)]
            if not ready:
                return
            try:
                replies = await self.call(ready)
            except Exception as exc:
                for delivery in ready:
                    await pipeline.failed(delivery, exc)
                return
            for delivery, reply in zip(ready, replies, strict=True):
                try:
                    await pipeline.finish(delivery, reply)
                except Exception as exc:
                    await pipeline.failed(delivery, exc)
            return
        await self._through_middleware(batch)

    async def _through_middleware(self, batch: list[Delivery]) -> None:
        """Run each message through the consume chain; call the handler once for the batch.

        The innermost step of each chain (`arrive`) waits for the call. The handler is called
        once every message has either arrived there or left the chain (a middleware that
        dropped it, settled it, or held it back).
        """
        loop = asyncio.get_running_loop()
        self._results = {d: loop.create_future() for d in batch}
        self._arrived = set()
        self._outstanding = len(batch)
        self._all_in = asyncio.Event()

        async def consume(delivery: Delivery) -> None:
            try:
                await self.bus.consume_pipeline.consume(delivery)
            finally:
                if delivery not in self._arrived:
                    self._one_in()

        tasks = [loop.create_task(consume(d)) for d in batch]
        try:
            await self._all_in.wait()
            arrived = [d for d in batch if d in self._arrived]
            if arrived:
                try:
                    replies = await self.call(arrived)
                except Exception as exc:
                    for delivery in arrived:
                        self._results[delivery].set_exception(exc)
                else:
                    for delivery, reply in zip(arrived, replies, strict=True):
                        self._results[delivery].set_result(reply)
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            self._results = {}
            self._arrived = set()
            self._all_in = None

    def _one_in(self) -> None:
        """One more message reached the handler's call or left the chain without it."""
        self._outstanding -= 1
        if self._outstanding == 0 and self._all_in is not None:
            self._all_in.set()

    async def arrive(self, delivery: Delivery) -> ACLMessage | None:
        """The innermost step of the consume chain for a batch handler's message.

        Waits for the call of the handler with the message's batch; returns the message's
        reply (or None) or raises what the handler raised.
        """
        result = self._results.get(delivery)
        if result is None:
            # Not in the batch being handled (a middleware passed it on later): alone, then.
            return (await self.call([delivery]))[0]
        self._arrived.add(delivery)
        self._one_in()
        return await result

    async def call(self, deliveries: Sequence[Delivery]) -> list[ACLMessage | None]:
        """Call the handler with ``deliveries``' messages; one reply (or None) each.

        Raises:
            TypeError: The handler returned something else than None or one reply (or None)
                per message.
            Exception: Whatever the handler raised.
        """
        msgs = [d.message for d in deliveries]
        result: Any
        if self.takes_delivery:
            result = await self.func(msgs, list(deliveries))
        else:
            result = await self.func(msgs)
        if result is None:
            return [None] * len(msgs)
        if (
            isinstance(result, list | tuple)
            and len(result) == len(msgs)
            and all(r is None or isinstance(r, ACLMessage) for r in result)
        ):
            return list(result)
        raise TypeError(
            f"batch handler {self.func.__qualname__} returned {type(result).__name__}: it must "
            f"return None, or a list of one reply (an ACLMessage or None) per message "
            f"({len(msgs)})"
        )
