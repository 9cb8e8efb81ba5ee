"""Middleware: async objects that plugins put around publishing, consuming and requesting.

A plugin returns middleware factories from the ``aclbus_middlewares`` hook. The bus makes one
middleware per factory at start and composes the chains once: the first middleware is the
outermost, so it enters first and leaves last. A middleware overrides only the methods it
needs; a method it does not override is left out of that chain entirely, so with no plugin the
chain is a direct call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aclbus.acl import ACLMessage
from aclbus.handling import Delivery
from aclbus.specs import DeliveryMode, PublishAck

T = TypeVar("T")
R = TypeVar("R")

__all__ = [
    "ConsumeNext",
    "Delivery",
    "Middleware",
    "MiddlewareFactory",
    "Outgoing",
    "PublishNext",
    "RequestNext",
    "compose",
]


@dataclass(slots=True)
class Outgoing:
    """A message on its way out, before it is encoded.

    Middleware may replace ``message`` (messages are immutable: use ``model_copy``) or add
    transport ``headers`` (trace context); the envelope's own headers are made from
    ``message`` after the chain. What must be computed from the encoded message itself (a
    signature over its headers and body) is added by `Middleware.seal` instead.

    Attributes:
        message: The message.
        subject: Where it goes.
        mode: Its delivery mode.
        headers: Extra transport headers, sent beside the envelope's.
        timeout: For a request, seconds to wait for the reply.
        msg_id: The broker's dedup key for a persistent publish; None: ``message.message_id``.
        content_type: The codec of the body (``application/msgpack``); None: the sending
            agent's `Agent.content_type`, else the bus' default codec (JSON).
    """

    message: ACLMessage
    subject: str
    mode: DeliveryMode = DeliveryMode.AT_LEAST_ONCE
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    msg_id: str | None = None
    content_type: str | None = None


PublishNext = Callable[[Outgoing], Awaitable[PublishAck]]
ConsumeNext = Callable[[Delivery], Awaitable[None]]
RequestNext = Callable[[Outgoing], Awaitable[ACLMessage]]


class Middleware:
    """Base class of middleware: every method passes straight through.

    Override any of them; call ``call_next`` to go on inward, or do not to stop the message
    (a consume middleware that stops it must settle the delivery).
    """

    async def publish(self, out: Outgoing, call_next: PublishNext) -> PublishAck:
        """Around every publish (send, broadcast, reply to an inbox)."""
        return await call_next(out)

    async def consume(self, delivery: Delivery, call_next: ConsumeNext) -> None:
        """Around every handled delivery, after decoding and before the handler."""
        await call_next(delivery)

    async def request(self, out: Outgoing, call_next: RequestNext) -> ACLMessage:
        """Around every request; returns the reply."""
        return await call_next(out)

    def seal(self, out: Outgoing, headers: dict[str, str], body: bytes) -> None:
        """After encoding, just before the backend: add headers made from the encoded message.

        Called for every publish and request, after the publish and request chains, with the
        envelope's headers (in lower case, then the middleware ``headers`` as they were
        written) and the encoded body. A sealer may add headers to ``headers`` (a signature
        over the others, as ``aclbus_signing`` does); it must not change the others. The bus
        checks the size limit afterwards, so what it adds counts. Sealers run from the
        innermost middleware outwards: the outermost one (``tryfirst=True``) sees every
        other's headers.

        Middlewares that do not override it are left out: with none, encoding costs what it
        costs without middleware. It is synchronous: a sealer does CPU work, not I/O.

        .. versionadded:: 0.1
        """


MiddlewareFactory = Callable[[Any], Middleware]
"""Makes a middleware for a bus: called once with the `aclbus.Bus` when it starts.

(The bus is typed ``Any`` here because this module sits below the bus: the bus imports it,
so naming the `Bus` class here would make an import cycle. Annotate your factory with
``aclbus.Bus``.)"""


def compose(
    middlewares: Sequence[Middleware],
    method: str,
    terminal: Callable[[T], Awaitable[R]],
) -> Callable[[T], Awaitable[R]]:
    """Wrap ``terminal`` in the middlewares' ``method``, the first middleware outermost.

    Middlewares that do not override ``method`` are skipped, so an empty chain is
    ``terminal`` itself.
    """
    call = terminal
    base = getattr(Middleware, method)
    for mw in reversed(middlewares):
        impl = getattr(type(mw), method, base)
        if impl is base:
            continue
        call = _bind(getattr(mw, method), call)
    return call


def _bind(
    step: Callable[[T, Callable[[T], Awaitable[R]]], Awaitable[R]],
    call_next: Callable[[T], Awaitable[R]],
) -> Callable[[T], Awaitable[R]]:
    async def call(value: T) -> R:
        return await step(value, call_next)

    return call
