"""Agents: named endpoints with handlers chosen by performative and message type.

An agent listens on its durable inbox, its request subject and the broadcast subject. Each
message goes to the first handler (in registration order) whose filters match it.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

from aclbus.acl import ACLMessage, Performative
from aclbus.backend import DeliveryMode, Subscription, SubscriptionSpec
from aclbus.errors import ConfigurationError
from aclbus.subjects import validate_id, validate_topic

if TYPE_CHECKING:
    from aclbus.bus import Bus
    from aclbus.middleware import Delivery

__all__ = ["Agent", "Handler", "Route"]

Handler = Callable[..., Awaitable[ACLMessage | None]]
"""``async def handler(msg)`` or ``async def handler(msg, delivery)``; may return a reply."""

H = TypeVar("H", bound=Handler)


@dataclass(frozen=True, slots=True)
class Route:
    """A handler and the messages it takes.

    Attributes:
        performatives: The acts it handles; None: every act.
        message_type: The message type it handles; None: any.
        func: The handler.
        takes_delivery: Whether it is called with ``(msg, delivery)``.
    """

    performatives: frozenset[Performative] | None
    message_type: str | None
    func: Handler
    takes_delivery: bool

    def matches(self, msg: ACLMessage) -> bool:
        """Whether this route handles ``msg``."""
        return (self.performatives is None or msg.performative in self.performatives) and (
            self.message_type is None or msg.message_type == self.message_type
        )


class Agent:
    """One agent on a bus. Make it with `Bus.agent`, not directly.

    Attributes:
        id: The agent's id.
        bus: The bus it lives on.
    """

    def __init__(self, bus: Bus, agent_id: str) -> None:
        self.id = validate_id(agent_id)
        self.bus = bus
        self._routes: list[Route] = []
        self._subscriptions: list[Subscription] = []

    def __repr__(self) -> str:
        return f"<Agent {self.id!r} {'started' if self.started else 'stopped'}>"

    @property
    def routes(self) -> tuple[Route, ...]:
        """The handlers in the order they are tried."""
        return tuple(self._routes)

    @property
    def started(self) -> bool:
        """True while the agent receives messages."""
        return bool(self._subscriptions)

    def on(
        self, *performatives: Performative | str, message_type: str | None = None
    ) -> Callable[[H], H]:
        """Register the decorated coroutine function as a handler.

        Args:
            *performatives: Handle only these acts; none: every act.
            message_type: Handle only messages of this dotted type.

        The handler takes the message, and optionally the `Delivery` to settle it itself. What
        it returns (an `ACLMessage`) is sent: to the waiting requester for a request, else to
        the reply's receivers. Handlers can be added while the agent runs.

        Raises:
            TypeError: The handler is not a coroutine function of one or two parameters.
            ValueError: An unknown performative or a bad message type.
        """
        acts = frozenset(Performative(p) for p in performatives) or None
        if message_type is not None:
            validate_topic(message_type)

        def decorate(func: H) -> H:
            self._routes.append(Route(acts, message_type, func, _takes_delivery(func)))
            return func

        return decorate

    def remove_handler(self, func: Handler) -> None:
        """Stop routing messages to ``func``.

        Raises:
            ValueError: ``func`` is not a handler of this agent.
        """
        before = len(self._routes)
        self._routes = [r for r in self._routes if r.func is not func]
        if len(self._routes) == before:
            raise ValueError(f"{func!r} is not a handler of agent {self.id!r}")

    def route(self, msg: ACLMessage) -> Route | None:
        """The route that handles ``msg``, or None."""
        for route in self._routes:
            if route.matches(msg):
                return route
        return None

    def message(self, performative: Performative | str, **fields: Any) -> ACLMessage:
        """Build a message from this agent: ``agent.message("request", receiver_id="b")``."""
        return ACLMessage(performative=performative, sender_id=self.id, **fields)

    async def start(self) -> None:
        """Subscribe to the inbox, the request subject and broadcasts. Idempotent.

        Raises:
            ConfigurationError: The bus is not started.
        """
        if self.started:
            return
        if not self.bus.started:
            raise ConfigurationError(
                f"agent {self.id!r} cannot start before its bus: use `async with bus:`"
            )
        s = self.bus.settings
        subjects = self.bus.subjects
        on_delivery = self.bus._delivery_handler(self)
        durable = self.bus.backend.capabilities.durable
        inbox_spec = SubscriptionSpec(
            subject=subjects.inbox(self.id),
            mode=DeliveryMode.AT_LEAST_ONCE,
            durable=subjects.durable("agent", self.id) if durable else None,
            queue=subjects.durable("agent", self.id),
            ack_wait=s.ack_wait,
            max_deliver=s.max_deliver,
            concurrency=s.handler_concurrency,
        )
        # The priority lane first, so that urgent messages waiting in it are not overtaken by
        # the first of a backlog of ordinary ones.
        lane = subjects.durable("prio", self.id)
        specs = [
            replace(
                inbox_spec,
                subject=subjects.priority_inbox(self.id),
                durable=lane if durable else None,
                queue=lane,
            ),
            inbox_spec,
            SubscriptionSpec(
                subject=subjects.rpc(self.id),
                mode=DeliveryMode.AT_MOST_ONCE,
                queue=subjects.durable("rpc", self.id),
                concurrency=s.handler_concurrency,
            ),
        ]
        persistent_broadcast = s.broadcast_mode is DeliveryMode.AT_LEAST_ONCE
        specs.append(
            SubscriptionSpec(
                subject=subjects.broadcast,
                mode=s.broadcast_mode,
                durable=(
                    subjects.durable("broadcast", self.id)
                    if persistent_broadcast and durable
                    else None
                ),
                queue=subjects.durable("broadcast", self.id),
                deliver="new",
                ack_wait=s.ack_wait,
                max_deliver=s.max_deliver,
                concurrency=s.handler_concurrency,
            )
        )
        try:
            for spec in specs:
                self._subscriptions.append(await self.bus.backend.subscribe(spec, on_delivery))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Unsubscribe. Unacknowledged inbox messages wait for the agent's next start."""
        subscriptions, self._subscriptions = self._subscriptions, []
        for sub in subscriptions:
            await sub.unsubscribe()


def _takes_delivery(func: Handler) -> bool:
    if not inspect.iscoroutinefunction(func):
        raise TypeError(f"handler {func!r} must be an async function (async def)")
    params = [
        p
        for p in inspect.signature(func).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(params) not in (1, 2):
        raise TypeError(
            f"handler {func.__qualname__} must take (msg) or (msg, delivery), "
            f"not {len(params)} positional parameters"
        )
    return len(params) == 2


async def call_handler(route: Route, delivery: Delivery) -> ACLMessage | None:
    """Call a route's handler with the arguments it asked for."""
    if route.takes_delivery:
        return await route.func(delivery.message, delivery)
    return await route.func(delivery.message)
