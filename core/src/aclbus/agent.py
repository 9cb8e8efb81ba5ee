"""Agents: named endpoints with handlers chosen by performative and message type.

An agent listens on its durable inbox, its request subject and the broadcast subject. Each
message goes to the first handler (in registration order) whose filters match it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel

from aclbus.acl import ACLMessage, Performative, build
from aclbus.backend import Subscription
from aclbus.batches import MAX_BATCH, Batcher
from aclbus.bus_core import BusCore
from aclbus.errors import ConfigurationError
from aclbus.handling import Handler, Route, route_filters, takes_delivery
from aclbus.specs import DeliveryMode, SubscriptionSpec
from aclbus.subjects import TrafficClass, validate_id
from aclbus.subscriptions import (
    agent_specs,
    consumers_per_agent,
    group_spec,
    topic_durable,
    topic_spec,
)

__all__ = ["Agent", "Handler", "Route", "consumers_per_agent"]

H = TypeVar("H", bound=Handler)


class Agent:
    """One agent on a bus. Make it with `Bus.agent`, not directly.

    Attributes:
        id: The agent's id.
        bus: The bus it lives on.
    """

    def __init__(self, bus: BusCore, agent_id: str) -> None:
        self.id = validate_id(agent_id)
        self.bus = bus
        self._content_type: str | None = None
        self._routes: list[Route] = []
        self._conversations: dict[str, Route] = {}
        # start, stop, join, leave, subscribe and unsubscribe change the subscriptions: one
        # at a time, or two racing starts would make the same durable consumer twice
        self._lifecycle = asyncio.Lock()
        self._groups: dict[str, Subscription | None] = {}
        self._topics: dict[str, _Topic] = {}
        self._subscriptions: list[Subscription] = []

    def __repr__(self) -> str:
        return f"<Agent {self.id!r} {'started' if self.started else 'stopped'}>"

    @property
    def content_type(self) -> str | None:
        """The codec of the messages this agent sends; None: the bus' default (JSON).

        It applies to every message with this agent as ``sender_id`` sent through its bus,
        its handlers' replies included, unless a send names its own ``content_type``.
        Receivers pick the codec by the message's ``content-type`` header, so they need that
        codec registered too (``aclbus_register_codecs``).

        Raises:
            ConfigurationError: Set to a content type no registered codec has.
        """
        return self._content_type

    @content_type.setter
    def content_type(self, value: str | None) -> None:
        if value is not None and value not in self.bus.codecs:
            known = ", ".join(sorted(self.bus.codecs)) or "none"
            raise ConfigurationError(
                f"agent {self.id!r}: no codec is registered for content type {value[:80]!r} "
                f"(known: {known}); a plugin registers one with aclbus_register_codecs"
            )
        self._content_type = value

    @property
    def routes(self) -> tuple[Route, ...]:
        """The handlers in the order they are tried."""
        return tuple(self._routes)

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        """The live subscriptions, empty while stopped.

        The inbox, its priority lane, requests and broadcasts, then one per group joined and
        one per topic pattern.
        """
        groups = (sub for sub in self._groups.values() if sub is not None)
        topics = (t.subscription for t in self._topics.values() if t.subscription is not None)
        return (*self._subscriptions, *groups, *topics)

    @property
    def started(self) -> bool:
        """True while the agent receives messages."""
        return bool(self._subscriptions)

    def on(
        self,
        *performatives: Performative | str,
        message_type: str | None = None,
        protocol: str | None = None,
        topic: str | None = None,
        headers: Mapping[str, str] | None = None,
        where: Callable[[ACLMessage], bool] | None = None,
        payload: type[BaseModel] | None = None,
    ) -> Callable[[H], H]:
        """Register the decorated coroutine function as a handler.

        Args:
            *performatives: Handle only these acts; none: every act.
            message_type: Handle only messages of this dotted type; ``*`` and ``>`` match
                one token and the rest (``task.*``).
            protocol: Handle only messages of this interaction protocol (``fipa-request``).
            topic: Handle only messages published on this topic or topic pattern.
            headers: Handle only messages carrying these application headers and values.
            where: Handle only messages for which this predicate is true (it must be cheap
                and must not raise: it runs for every message the other filters pass).
            payload: A pydantic model for the payload. It is validated before the handler
                runs; the handler gets the message with the model instance as payload. An
                invalid payload is answered ``not-understood`` with the validation errors and
                dead-lettered (reason ``invalid-payload``); the handler never sees it.

        The handler takes the message, and optionally the `Delivery` to settle it itself. What
        it returns (an `ACLMessage`) is sent: to the waiting requester for a request, else to
        the reply's receivers. An async generator handler streams what it yields to a
        requester that called `Bus.request_stream`. Handlers can be added while the agent runs;
        each message goes to the first matching handler, in registration order.

        Raises:
            TypeError: The handler is not a coroutine (or async generator) function of one or
                two parameters, or ``payload`` is not a pydantic model class.
            ValueError: An unknown performative, a bad message type, protocol, topic or header.
        """
        filters = route_filters(
            performatives, message_type, protocol, topic, headers, where, payload
        )

        def decorate(func: H) -> H:
            streams = inspect.isasyncgenfunction(func)
            server = None
            if streams:
                # on first use: most programs stream nothing, and `import aclbus` must not pay
                from aclbus.streaming import serve

                server = partial(serve, self.bus)
            self._routes.append(
                Route(
                    func=func,
                    takes_delivery=takes_delivery(func),
                    streams=streams,
                    server=server,
                    **filters,
                )
            )
            return func

        return decorate

    def on_batch(
        self,
        *performatives: Performative | str,
        max_messages: int = 100,
        max_wait: float = 0.05,
        message_type: str | None = None,
        protocol: str | None = None,
        topic: str | None = None,
        headers: Mapping[str, str] | None = None,
        where: Callable[[ACLMessage], bool] | None = None,
        payload: type[BaseModel] | None = None,
    ) -> Callable[[H], H]:
        """Register the decorated coroutine function as a handler of batches of messages.

        The handler is ``async def handler(msgs)`` or ``async def handler(msgs, deliveries)``:
        a list of up to ``max_messages`` messages, in the order they came, and their
        `Delivery` objects. It is called when ``max_messages`` have come, or when the first of
        them has waited ``max_wait`` seconds; one batch at a time. The filters are those of
        `on`, and each message is routed, checked against ``payload`` and passed through the
        consume middleware on its own.

        When the handler returns, every message it did not settle itself (with its delivery's
        ``ack``, ``nack`` or ``term``) is acknowledged; when it raises, every unsettled message
        of the batch fails as with any handler's error (the retry policy, then the dead-letter
        queue). It may return a list of one reply (an `ACLMessage` or None) per message: each
        is sent as a handler's return value is (to a waiting requester, else the receivers).

        Args:
            *performatives: Handle only these acts; none: every act.
            max_messages: Messages per call, at most (1 to `aclbus.batches.MAX_BATCH`).
            max_wait: Seconds the first message of a batch waits for more, at most; below
                the bus' ``ack_wait``, or messages would be redelivered while they wait.
            message_type: As in `on`.
            protocol: As in `on`.
            topic: As in `on`.
            headers: As in `on`.
            where: As in `on`.
            payload: As in `on`: a message whose payload does not fit is answered
                ``not-understood`` and dead-lettered, and the batch goes on without it.

        Raises:
            TypeError: The handler is not a coroutine function of one or two parameters (an
                async generator cannot take batches), or ``max_messages`` is not an integer.
            ValueError: ``max_messages`` or ``max_wait`` out of range, or a bad filter.
        """
        if not isinstance(max_messages, int) or isinstance(max_messages, bool):
            raise TypeError(f"max_messages must be an integer, not {max_messages!r}")
        if not 1 <= max_messages <= MAX_BATCH:
            raise ValueError(f"max_messages must be from 1 to {MAX_BATCH}, got {max_messages}")
        ack_wait = self.bus.settings.ack_wait
        if not 0 < max_wait < ack_wait:
            raise ValueError(
                f"max_wait must be above 0 and below the ack_wait of {ack_wait:g} s (messages "
                f"waiting for their batch would be redelivered), got {max_wait!r}"
            )
        filters = route_filters(
            performatives, message_type, protocol, topic, headers, where, payload
        )

        def decorate(func: H) -> H:
            if inspect.isasyncgenfunction(func):
                raise TypeError(
                    f"batch handler {func.__qualname__} is an async generator: it cannot "
                    "stream replies to a batch; return a list of replies instead"
                )
            with_delivery = takes_delivery(func)
            batcher = Batcher(self.bus, self.id, func, with_delivery, max_messages, max_wait)
            self._routes.append(
                Route(func=func, takes_delivery=with_delivery, batch=batcher, **filters)
            )
            return func

        return decorate

    def on_conversation(self, conversation_id: str, func: Handler) -> None:
        """Route every message of one conversation to ``func``, before any other handler.

        Interaction protocols use it: the initiator of a conversation takes the answers to it
        (matched on ``correlation_id``) whatever handlers the agent has. `end_conversation`
        removes it.

        Args:
            conversation_id: The conversation (``correlation_id``) to take.
            func: ``async def func(msg)`` or ``async def func(msg, delivery)``.

        Raises:
            InvalidIdentifier: ``conversation_id`` is not a valid id.
            TypeError: ``func`` is not a coroutine function of one or two parameters.
            ValueError: The conversation already has a handler.
        """
        validate_id(conversation_id, "conversation id")
        if conversation_id in self._conversations:
            raise ValueError(f"conversation {conversation_id!r} already has a handler")
        self._conversations[conversation_id] = Route(None, None, func, takes_delivery(func))

    def end_conversation(self, conversation_id: str) -> None:
        """Stop routing a conversation to its handler (no error if it had none)."""
        self._conversations.pop(conversation_id, None)

    # -- streaming ----------------------------------------------------------------------

    def on_stream(
        self,
        *performatives: Performative | str,
        message_type: str | None = None,
        **filters: Any,
    ) -> Callable[[H], H]:
        """Register the decorated function as a handler of streams pushed by `Bus.send_stream`.

        The handler is ``async def handler(msg, chunks) -> ACLMessage | None``: ``chunks`` is
        an async iterator of the items' payloads. See `aclbus.streaming.on_stream`.
        """
        from aclbus.streaming import on_stream

        return on_stream(self, *performatives, message_type=message_type, **filters)

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
        """The route that handles ``msg``, or None: its conversation's, else the first match."""
        if self._conversations and msg.correlation_id is not None:
            taken = self._conversations.get(msg.correlation_id)
            if taken is not None:
                return taken
        for route in self._routes:
            if route.matches(msg):
                return route
        return None

    def message(self, performative: Performative | str, **fields: Any) -> ACLMessage:
        """Build a message from this agent: ``agent.message("request", receiver_id="b")``."""
        return build(performative=performative, sender_id=self.id, **fields)

    async def start(self) -> None:
        """Subscribe to the inbox, the request subject and broadcasts. Idempotent.

        Concurrent calls are safe: the first starts the agent, the others wait for it.

        Raises:
            ConfigurationError: The bus is not started.
        """
        async with self._lifecycle:
            await self._start()

    async def _start(self) -> None:
        if self.started:
            return
        if not self.bus.started:
            raise ConfigurationError(
                f"agent {self.id!r} cannot start before its bus: use `async with bus:`"
            )
        on_delivery = self.bus.consume_pipeline.handler_for(self)
        specs = agent_specs(
            self.bus.settings,
            self.bus.subjects,
            self.id,
            durable=self.bus.backend.capabilities.durable,
        )
        try:
            for spec in specs:
                self._subscriptions.append(await self.bus.backend.subscribe(spec, on_delivery))
            for group in self._groups:
                self._groups[group] = await self._subscribe(self._group_spec(group))
            for topic in self._topics.values():
                topic.subscription = await self._subscribe(self._topic_spec(topic))
        except BaseException:
            await self._stop()
            raise

    async def stop(self) -> None:
        """Unsubscribe. Unacknowledged inbox messages wait for the agent's next start.

        The agent stays a member of its groups and keeps its topic subscriptions: durable
        ones keep what arrives meanwhile for its next start.
        """
        async with self._lifecycle:
            await self._stop()

    async def _stop(self) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        for group, sub in self._groups.items():
            if sub is not None:
                subscriptions.append(sub)
                self._groups[group] = None
        for topic in self._topics.values():
            if topic.subscription is not None:
                subscriptions.append(topic.subscription)
                topic.subscription = None
        for sub in subscriptions:
            await sub.unsubscribe()
        # What batch handlers still hold came before the stop: handle it now.
        for route in list(self._routes):
            if route.batch is not None:
                await route.batch.drain()

    async def _subscribe(self, spec: SubscriptionSpec) -> Subscription:
        return await self.bus.backend.subscribe(spec, self.bus.consume_pipeline.handler_for(self))

    # -- groups ----------------------------------------------------------------------------

    @property
    def groups(self) -> tuple[str, ...]:
        """The groups this agent has joined, in joining order."""
        return tuple(self._groups)

    async def join(self, group: str) -> None:
        """Join a multicast group: from now on, `Bus.multicast` to it reaches this agent.

        Membership is recorded in the bus' key-value store, where every agent can see it
        (`Bus.group_members`). Every instance of the agent shares one membership and each group
        message goes to one of them. An agent that is not started yet joins when it starts.
        Joining a group twice does nothing.

        Raises:
            InvalidIdentifier: ``group`` is not a valid id.
            CapabilityError: The backend has no key-value store.
            BackendClosed: The bus is not started.
        """
        validate_id(group, "group")
        bucket = await self.bus.groups_bucket()
        async with self._lifecycle:
            if group in self._groups:
                return
            subscription = await self._subscribe(self._group_spec(group)) if self.started else None
            self._groups[group] = subscription
            try:
                await bucket.put(
                    f"{group}.{self.id}",
                    orjson.dumps({"agent": self.id, "joined": datetime.now(UTC).isoformat()}),
                )
            except BaseException:
                self._groups.pop(group, None)
                if subscription is not None:
                    await subscription.unsubscribe()
                raise

    async def leave(self, group: str) -> None:
        """Leave a group: nothing sent to it from now on reaches this agent.

        Its group consumer is deleted, so a later `join` starts from new messages, not from
        those sent while it was out. Leaving is for every instance of the agent.

        Raises:
            InvalidIdentifier: ``group`` is not a valid id.
            ValueError: The agent is not a member of ``group``.
        """
        validate_id(group, "group")
        async with self._lifecycle:
            if group not in self._groups:
                raise ValueError(f"agent {self.id!r} is not a member of group {group!r}")
            subscription = self._groups.pop(group)
            if subscription is not None:
                await subscription.unsubscribe()
        bucket = await self.bus.groups_bucket()
        await bucket.delete(f"{group}.{self.id}")
        backend = self.bus.backend
        if backend.capabilities.durable:
            await backend.delete_consumer(
                self.bus.subjects.stream(TrafficClass.GROUP),
                self.bus.subjects.durable("group", group, self.id),
            )

    def _group_spec(self, group: str) -> SubscriptionSpec:
        return group_spec(
            self.bus.settings,
            self.bus.subjects,
            self.id,
            group,
            durable=self.bus.backend.capabilities.durable,
        )

    # -- topics ----------------------------------------------------------------------------

    @property
    def topics(self) -> tuple[str, ...]:
        """The topic patterns this agent subscribes to, in subscribing order."""
        return tuple(self._topics)

    async def subscribe(
        self,
        pattern: str,
        handler: Handler | None = None,
        *,
        mode: DeliveryMode = DeliveryMode.AT_LEAST_ONCE,
        performatives: Iterable[Performative | str] = (),
        message_type: str | None = None,
        protocol: str | None = None,
        headers: Mapping[str, str] | None = None,
        where: Callable[[ACLMessage], bool] | None = None,
    ) -> None:
        """Subscribe to a topic pattern at run time (see `Bus.publish`).

        Messages published on a matching topic go to this agent's handlers, or to
        ``handler`` when one is given, and then only to messages that also pass the content
        filters (``performatives``, ``message_type``, ``protocol``, ``headers``, ``where``, as in
        `on`). Topic messages no handler takes are acknowledged and dropped, not answered.

        Args:
            pattern: A dotted topic; ``*`` matches one token, ``>`` the rest (``orders.*.eu``).
            handler: A handler only for this subscription; None: the agent's handlers.
            mode: ``at_least_once`` (default) reads the topic stream with a durable consumer:
                what is published while the agent is stopped waits for it, and instances of the
                agent share the messages. ``at_most_once``: only what arrives while it runs.
            performatives: Content filter, with the other filters, for ``handler``.
            message_type: Content filter (pattern allowed) for ``handler``.
            protocol: Content filter for ``handler``.
            headers: Content filter for ``handler``: application headers and values.
            where: Content filter for ``handler``: a predicate.

        Raises:
            InvalidIdentifier: A bad pattern.
            ValueError: The agent already subscribes to ``pattern``; a filter given without a
                handler.
        """
        self.bus.subjects.topic(pattern, pattern=True)
        if pattern in self._topics:
            raise ValueError(f"agent {self.id!r} already subscribes to {pattern!r}")
        filters = bool(performatives) or any(
            f is not None for f in (message_type, protocol, headers, where)
        )
        if handler is None and filters:
            raise ValueError("content filters of subscribe() apply to its handler: pass one")
        if handler is not None:
            self.on(
                *performatives,
                message_type=message_type,
                protocol=protocol,
                topic=pattern,
                headers=headers,
                where=where,
            )(handler)
            # The subscription's own handler comes before the agent's general ones.
            self._routes.insert(0, self._routes.pop())
        topic = _Topic(pattern, mode, handler)
        async with self._lifecycle:
            self._topics[pattern] = topic
            if self.started:
                try:
                    topic.subscription = await self._subscribe(self._topic_spec(topic))
                except BaseException:
                    await self._drop_topic(pattern)
                    raise

    async def unsubscribe(self, pattern: str) -> None:
        """End a topic subscription made with `subscribe` (its durable consumer too).

        Raises:
            ValueError: The agent does not subscribe to ``pattern``.
        """
        async with self._lifecycle:
            if pattern not in self._topics:
                raise ValueError(f"agent {self.id!r} does not subscribe to {pattern!r}")
            topic = await self._drop_topic(pattern)
        backend = self.bus.backend
        if topic.mode is DeliveryMode.AT_LEAST_ONCE and backend.capabilities.durable:
            await backend.delete_consumer(
                self.bus.subjects.stream(TrafficClass.TOPIC), self._topic_durable(pattern)
            )

    async def _drop_topic(self, pattern: str) -> _Topic:
        topic = self._topics.pop(pattern)
        if topic.handler is not None:
            self._routes = [
                r for r in self._routes if not (r.func is topic.handler and r.topic == pattern)
            ]
        if topic.subscription is not None:
            await topic.subscription.unsubscribe()
            topic.subscription = None
        return topic

    def _topic_durable(self, pattern: str) -> str:
        return topic_durable(self.bus.subjects, self.id, pattern)

    def _topic_spec(self, topic: _Topic) -> SubscriptionSpec:
        return topic_spec(
            self.bus.settings,
            self.bus.subjects,
            self.id,
            topic.pattern,
            topic.mode,
            durable=self.bus.backend.capabilities.durable,
        )


@dataclass(slots=True)
class _Topic:
    pattern: str
    mode: DeliveryMode
    handler: Handler | None
    subscription: Subscription | None = None
