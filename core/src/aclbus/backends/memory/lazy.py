"""`LazySubscription`: a subscription whose consumer is made when its first message is stored.

See `SubscriptionSpec.lazy` and `MemoryServer.wait_for_consumer`: until then it waits, and
once its consumer is made it stands for the `MemorySubscription` made on it.
"""

from __future__ import annotations

from collections.abc import Callable

from aclbus.backend import Subscription, SubscriptionSpec
from aclbus.backends.memory.subscription import MemorySubscription

__all__ = ["LazySubscription"]


class LazySubscription(Subscription):
    """A lazy subscription (`SubscriptionSpec.lazy`) waiting for its subject's first message.

    Once that comes, it stands for the subscription it made for it.

    Args:
        spec: What was subscribed to.
        on_end: Called once it stops waiting (made its subscription, or unsubscribed).
    """

    def __init__(self, spec: SubscriptionSpec, on_end: Callable[[LazySubscription], None]) -> None:
        self.spec = spec
        self._on_end = on_end
        self._cancel: Callable[[], None] | None = None
        self._inner: MemorySubscription | None = None
        self._active = True

    @property
    def active(self) -> bool:
        """False once unsubscribed or once the backend closed."""
        return self._active and (self._inner is None or self._inner.active)

    @property
    def consumer(self) -> str | None:
        """The name of its consumer once made, else None."""
        return self._inner.consumer if self._inner is not None else None

    def waiting(self, cancel: Callable[[], None]) -> None:
        """It waits; ``cancel`` ends the wait."""
        self._cancel = cancel

    def bound(self, inner: MemorySubscription) -> None:
        """Its consumer was made: from now on it is ``inner``."""
        self._inner, self._cancel = inner, None
        self._on_end(self)

    def stop(self) -> None:
        """Stop waiting (the backend closes)."""
        self._active = False
        if self._cancel is not None:
            self._cancel()
            self._cancel = None
            self._on_end(self)

    async def unsubscribe(self) -> None:
        """Stop waiting, or stop the subscription it made."""
        self.stop()
        if self._inner is not None:
            await self._inner.unsubscribe()
