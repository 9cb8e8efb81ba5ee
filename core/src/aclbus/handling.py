"""What a handler is given and how it is chosen: `Delivery` and `Route`.

An agent keeps its routes in registration order (`aclbus.agent.Agent.route` picks the first
that matches); the consume pipeline (`aclbus.delivery.consume`) calls the chosen route's
handler. A route whose handler is not called one message at a time carries how it runs
instead: a batch handler its `BatchCollector`, a streaming handler its `StreamServer`. Both
are defined by the layers above (`aclbus.batches`, `aclbus.streaming`), which is why they
are protocols here.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from aclbus.acl import ACLMessage, Performative
from aclbus.backend import Received
from aclbus.subjects import subject_matches, validate_id, validate_topic

__all__ = [
    "BatchCollector",
    "Delivery",
    "Handler",
    "Route",
    "StreamServer",
    "route_filters",
    "takes_delivery",
]

Handler = Callable[..., Any]
"""``async def handler(msg)`` or ``async def handler(msg, delivery)``; may return a reply.

An async generator function (``async def h(msg): yield ...``) streams its items to the
requester instead (see `aclbus.streaming`).
"""


class BatchCollector(Protocol):
    """How a batch handler's route runs (`aclbus.batches.Batcher` is the one there is)."""

    @property
    def waiting(self) -> int:
        """Messages collected and not handed to the handler yet."""
        ...

    async def add(self, delivery: Delivery) -> None:
        """Take a routed delivery for the next batch, before the consume middleware."""

    async def arrive(self, delivery: Delivery) -> ACLMessage | None:
        """The innermost step of the consume chain: wait for the batch's call, its reply."""

    async def drain(self) -> None:
        """Handle every message still waiting, without waiting for more (the agent stops)."""


StreamServer = Callable[["Route", "Delivery"], Awaitable[None]]
"""Runs a streaming handler for one request and streams what it yields to the requester,
settling nothing itself (`aclbus.streaming.serve`, bound to its bus)."""


@dataclass(frozen=True, slots=True)
class Route:
    """A handler and the messages it takes.

    Every filter that is set must match. ``message_type`` and ``topic`` may be patterns with
    the subject wildcards ``*`` (one token) and ``>`` (the rest).

    Attributes:
        performatives: The acts it handles; None: every act.
        message_type: The message type (or pattern) it handles; None: any.
        func: The handler.
        takes_delivery: Whether it is called with ``(msg, delivery)``.
        protocol: The interaction protocol it handles; None: any.
        topic: The topic (or pattern) it handles; None: any, topic traffic or not.
        headers: Application headers that must be present with these values.
        where: A predicate on the message, tried after the other filters.
        payload: A pydantic model the payload is validated against before the handler runs;
            the handler then gets the message with the model instance as its payload.
        streams: The handler is an async generator: what it yields is streamed to the
            requester (see `aclbus.streaming`).
        batch: The handler takes batches of messages (`Agent.on_batch`): the batcher that
            collects them; None for a handler of one message at a time.
        server: For a streaming handler, what runs it (set with ``streams``).
    """

    performatives: frozenset[Performative] | None
    message_type: str | None
    func: Handler
    takes_delivery: bool
    protocol: str | None = None
    topic: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    where: Callable[[ACLMessage], bool] | None = None
    payload: type[BaseModel] | None = None
    streams: bool = False
    batch: BatchCollector | None = None
    server: StreamServer | None = None

    def matches(self, msg: ACLMessage) -> bool:
        """Whether this route handles ``msg``."""
        if self.performatives is not None and msg.performative not in self.performatives:
            return False
        if self.message_type is not None and not (
            msg.message_type is not None and subject_matches(self.message_type, msg.message_type)
        ):
            return False
        if self.protocol is not None and msg.protocol != self.protocol:
            return False
        if self.topic is not None and not (
            msg.topic is not None and subject_matches(self.topic, msg.topic)
        ):
            return False
        for name, value in self.headers:
            if msg.headers.get(name) != value:
                return False
        return self.where is None or bool(self.where(msg))


class Delivery:
    """A decoded message handed to an agent, with the means to settle it.

    A handler that takes a second parameter receives this object, to settle the message
    itself (``nack(delay=...)`` to retry later, ``term(reason)`` to give up, ``in_progress()``
    while working long). Unsettled after the handler returns, it is acknowledged.

    Attributes:
        message: The decoded message.
        received: The backend's delivery (subject, headers, body as sent).
        agent: The id of the agent it was delivered to.
        route: The handler the message is routed to (found before the middleware runs), or
            None when no handler takes it (it is then answered ``not-understood``).
    """

    __slots__ = ("agent", "message", "received", "route", "state")

    def __init__(
        self, message: ACLMessage, received: Received, agent: str, route: Route | None = None
    ) -> None:
        self.message = message
        self.received = received
        self.agent = agent
        self.route = route
        self.state: dict[str, Any] = {}
        """Scratch space for middleware to pass data to inner middleware and the handler."""

    @property
    def attempt(self) -> int:
        """Which delivery of this message this is, from 1."""
        return self.received.attempt

    @property
    def sequence(self) -> int | None:
        """The message's sequence in its stream (None when not persisted)."""
        return self.received.sequence

    @property
    def subject(self) -> str:
        """The subject the message arrived on."""
        return self.received.subject

    @property
    def headers(self) -> Mapping[str, str]:
        """The transport headers as received."""
        return self.received.headers

    @property
    def settled(self) -> str | None:
        """``"ack"``, ``"nack"`` or ``"term"`` once settled, else None."""
        return self.received.settled

    async def ack(self) -> None:
        """Acknowledge the message."""
        await self.received.ack()

    async def nack(self, delay: float | None = None) -> None:
        """Ask for redelivery after ``delay`` seconds (at once when None)."""
        await self.received.nack(delay)

    async def term(self, reason: str | None = None) -> None:
        """Give up on the message; it is not delivered again."""
        await self.received.term(reason)

    async def in_progress(self) -> None:
        """Restart the ack timer: the handler is still working."""
        await self.received.in_progress()


def _header_filter(headers: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    if not headers:
        return ()
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str) or not name or not value:
            raise ValueError(f"header filter {name!r}: {value!r} must be two non-empty strings")
        if name != name.lower():
            raise ValueError(f"header filter {name!r}: header names are lower-case")
    return tuple(sorted(headers.items()))


def route_filters(
    performatives: tuple[Performative | str, ...],
    message_type: str | None,
    protocol: str | None,
    topic: str | None,
    headers: Mapping[str, str] | None,
    where: Callable[[ACLMessage], bool] | None,
    payload: type[BaseModel] | None,
) -> dict[str, Any]:
    """The filters of a handler, checked: `Route`'s fields other than the handler's.

    Raises:
        TypeError: ``payload`` is not a pydantic model class.
        ValueError: An unknown performative, a bad message type, protocol, topic or header.
    """
    acts = frozenset(Performative(p) for p in performatives) or None
    if message_type is not None:
        validate_topic(message_type, pattern=True)
    if protocol is not None:
        validate_id(protocol, "protocol")
    if topic is not None:
        validate_topic(topic, pattern=True)
    if payload is not None and not (isinstance(payload, type) and issubclass(payload, BaseModel)):
        raise TypeError(f"payload= must be a pydantic model class, not {payload!r}")
    return {
        "performatives": acts,
        "message_type": message_type,
        "protocol": protocol,
        "topic": topic,
        "headers": _header_filter(headers),
        "where": where,
        "payload": payload,
    }


def takes_delivery(func: Handler) -> bool:
    """Whether a handler takes ``(msg, delivery)`` rather than ``(msg)``.

    Raises:
        TypeError: It is not an async function of one or two positional parameters.
    """
    if not (inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)):
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
