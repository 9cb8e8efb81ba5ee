"""The subscriptions made through one backend: started here, all stopped when it closes.

An ``at_most_once`` subscription takes from a core inbox; an ``at_least_once`` one binds to
a consumer, made now or, for a lazy one, when its subject's first message is stored.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aclbus.backend import DeliveryHandler, DeliveryMode, Subscription, SubscriptionSpec
from aclbus.backends.memory.consumer import Consumer
from aclbus.backends.memory.lazy import LazySubscription
from aclbus.backends.memory.subscription import DeliverySource, MemorySubscription

if TYPE_CHECKING:
    from aclbus.backends.memory.server import MemoryServer

__all__ = ["Subscriptions"]

_AMO = DeliveryMode.AT_MOST_ONCE


class Subscriptions:
    """The active subscriptions of one backend, lazy ones still waiting included.

    Args:
        server: The server they take their deliveries from.
    """

    def __init__(self, server: MemoryServer) -> None:
        self._server = server
        self._active: set[MemorySubscription] = set()
        self._lazy: set[LazySubscription] = set()  # lazy ones waiting for a first message

    def __len__(self) -> int:
        """How many are running (lazy ones still waiting are not counted)."""
        return len(self._active)

    def all(self) -> list[Subscription]:
        """Every active subscription, lazy ones still waiting too."""
        return [*self._active, *self._lazy]

    def start(self, spec: SubscriptionSpec, handler: DeliveryHandler) -> Subscription:
        """Subscribe ``handler`` to a checked ``spec``: a `MemorySubscription`, or a lazy one.

        Raises:
            NoStream: ``at_least_once`` on a subject no stream stores.
            ConfigurationError: A durable name already bound to another subject.
        """
        server = self._server
        if spec.mode == _AMO:
            return self._run(spec, handler, server.router.add(spec.subject, spec.queue))
        if spec.lazy:
            lazy = LazySubscription(spec, self._lazy.discard)

            def ready(bound: Consumer) -> None:
                lazy.bound(self._run(spec, handler, bound))

            cancel = server.wait_for_consumer(spec, ready)
            if cancel is not None:
                lazy.waiting(cancel)
                self._lazy.add(lazy)
                return lazy
        return self._run(spec, handler, server.consumer_for(spec))

    def stop(self) -> list[asyncio.Task[None]]:
        """Stop every subscription, cancelling running handlers; return the tasks to await."""
        for lazy in list(self._lazy):
            lazy.stop()
        return [task for sub in list(self._active) for task in sub.abort()]

    def _run(
        self, spec: SubscriptionSpec, handler: DeliveryHandler, source: DeliverySource
    ) -> MemorySubscription:
        stream = consumer = None
        if isinstance(source, Consumer):
            stream, consumer = source.stream.name, source.name
        subscription = MemorySubscription(
            spec,
            handler,
            source,
            on_end=self._active.discard,
            stream=stream,
            consumer=consumer,
        )
        self._active.add(subscription)
        subscription.start()
        return subscription
