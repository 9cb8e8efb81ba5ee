"""Core publish-subscribe (``at_most_once``): fan-out, queue groups and wildcards, no storage.

A message goes to the subscriptions present when it is published: to each plain subscription
whose subject matches, and to one member (in turn) of each queue group with a matching member,
as NATS does. Each subscription has an inbox its workers take from; nothing is acknowledged.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aclbus.backend import DeliveryMode, Received
from aclbus.subjects import subject_matches

if TYPE_CHECKING:
    from aclbus.backends.memory.clock import Clock, Timer
    from aclbus.backends.memory.faults import FaultInjector

__all__ = ["CoreInbox", "CoreReceived", "CoreRouter"]

_AMO = DeliveryMode.AT_MOST_ONCE
_INTEREST_CACHE_CAP = 10_000


class CoreReceived(Received):
    """An ``at_most_once`` delivery: settling it does nothing."""

    __slots__ = ()

    async def _ack(self) -> None:
        pass

    async def _nack(self, delay: float | None) -> None:
        pass

    async def _term(self, reason: str | None) -> None:
        pass

    async def _in_progress(self) -> None:
        pass


class CoreInbox:
    """The deliveries waiting for one ``at_most_once`` subscription's workers.

    Args:
        router: The router it is registered with.
        pattern: The subject (pattern) subscribed to.
        queue: Its queue group, or None.
    """

    shared = False
    """An inbox belongs to one subscription: its workers never compete with others."""

    def __init__(self, router: CoreRouter, pattern: str, queue: str | None) -> None:
        self._router = router
        self.pattern = pattern
        self.queue = queue
        self._items: deque[Received] = deque()
        self.waiters: deque[asyncio.Future[Received | None]] = deque()
        self.held: Received | None = None
        self._held_timer: Timer | None = None
        self.closed = False

    def put(self, delivery: Received) -> None:
        """Hand ``delivery`` to a waiting worker, or keep it for the next one that asks."""
        if self.closed:
            return
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(delivery)
                return
        self._items.append(delivery)

    def take(self) -> Received | None:
        """The oldest delivery waiting, or None."""
        items = self._items
        return items.popleft() if items else None

    def release(self, delivery: Received) -> None:
        """A delivery never handed to the handler is lost: at most once."""

    def attach(self, subscription: object) -> None:
        """Nothing to do: the inbox was made for this subscription."""

    def detach(self, subscription: object) -> None:
        """Stop receiving: unregister from the router and drop what is waiting."""
        self.closed = True
        self._items.clear()
        self.waiters.clear()
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        self.held = None
        self._router.remove(self)

    def release_held(self) -> None:
        """Deliver the delivery held back by a reorder fault."""
        held, self.held = self.held, None
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        if held is not None:
            self.put(held)

    def hold(self, delivery: Received, clock: Clock, seconds: float) -> None:
        """Hold ``delivery`` back until the next one is put, or ``seconds`` at most."""
        self.held = delivery
        self._held_timer = clock.call_later(seconds, self.release_held)


class _Group:
    """The members of one queue group that match one subject, served in turn."""

    __slots__ = ("members", "turn")

    def __init__(self, members: tuple[CoreInbox, ...]) -> None:
        self.members = members
        self.turn = 0

    def pick(self) -> CoreInbox:
        member = self.members[self.turn % len(self.members)]
        self.turn += 1
        return member


class _Interest:
    """Who receives a message on one subject."""

    __slots__ = ("groups", "plain")

    def __init__(self, plain: tuple[CoreInbox, ...], groups: tuple[_Group, ...]) -> None:
        self.plain = plain
        self.groups = groups


class CoreRouter:
    """Routes ``at_most_once`` messages to the inboxes of the subscriptions present.

    Args:
        clock: The engine's clock (for injected delays).
        injector: The engine's fault injector.
    """

    def __init__(self, clock: Clock, injector: FaultInjector) -> None:
        self._clock = clock
        self._injector = injector
        self._inboxes: list[CoreInbox] = []
        self._interest: dict[str, _Interest] = {}

    def add(self, pattern: str, queue: str | None) -> CoreInbox:
        """Register a subscription to ``pattern`` (in queue group ``queue``)."""
        inbox = CoreInbox(self, pattern, queue)
        self._inboxes.append(inbox)
        self._interest.clear()
        return inbox

    def remove(self, inbox: CoreInbox) -> None:
        """Unregister a subscription."""
        if inbox in self._inboxes:
            self._inboxes.remove(inbox)
            self._interest.clear()

    @property
    def subscriptions(self) -> int:
        """How many subscriptions are registered."""
        return len(self._inboxes)

    def _lookup(self, subject: str) -> _Interest:
        interest = self._interest.get(subject)
        if interest is not None:
            return interest
        plain: list[CoreInbox] = []
        groups: dict[str, list[CoreInbox]] = {}
        for inbox in self._inboxes:
            if subject_matches(inbox.pattern, subject):
                if inbox.queue is None:
                    plain.append(inbox)
                else:
                    groups.setdefault(inbox.queue, []).append(inbox)
        interest = _Interest(tuple(plain), tuple(_Group(tuple(m)) for m in groups.values()))
        if len(self._interest) >= _INTEREST_CACHE_CAP:
            self._interest.clear()
        self._interest[subject] = interest
        return interest

    def has_interest(self, subject: str) -> bool:
        """Whether a message on ``subject`` would reach any subscription."""
        interest = self._lookup(subject)
        return bool(interest.plain or interest.groups)

    def route(
        self, subject: str, headers: Mapping[str, str], body: bytes, reply: str | None
    ) -> int:
        """Deliver a message to every interested subscription; return how many got it."""
        interest = self._lookup(subject)
        for inbox in interest.plain:
            self._send(inbox, CoreReceived(subject, headers, body, reply=reply, mode=_AMO))
        for group in interest.groups:
            self._send(group.pick(), CoreReceived(subject, headers, body, reply=reply, mode=_AMO))
        return len(interest.plain) + len(interest.groups)

    def _send(self, inbox: CoreInbox, delivery: CoreReceived) -> None:
        if self._injector.active:
            self._inject(inbox, delivery)
        else:
            inbox.put(delivery)

    def _inject(self, inbox: CoreInbox, delivery: CoreReceived) -> None:
        injector = self._injector
        if not injector.applies(delivery.subject):
            inbox.put(delivery)
            return
        faults = injector.faults
        if injector.delay():
            self._clock.call_later(faults.delay_seconds, lambda: inbox.put(delivery))
            return
        if inbox.held is None and injector.reorder():
            inbox.hold(delivery, self._clock, faults.reorder_hold)
            return
        inbox.put(delivery)
        if injector.duplicate():
            inbox.put(
                CoreReceived(
                    delivery.subject,
                    delivery.headers,
                    delivery.body,
                    reply=delivery.reply,
                    mode=_AMO,
                )
            )
        if inbox.held is not None:
            inbox.release_held()
