"""The way out: the publish or request middleware chain, encoding, the backend.

`PublishPipeline.publish` and `PublishPipeline.request` are the composed chains: middleware
first (the first one outermost), then the terminal step, which checks the hop limit, encodes
the envelope into headers and a body (`aclbus.wire.encode`) and hands them to the backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from aclbus import wire
from aclbus.acl import ACLMessage
from aclbus.backend import Backend, DeliveryMode, PublishAck
from aclbus.codec import CodecRegistry
from aclbus.errors import HopLimitExceeded, MessageTooLarge
from aclbus.middleware import Middleware, Outgoing, PublishNext, RequestNext, compose
from aclbus.settings import Settings
from aclbus.stats import BusStats
from aclbus.subjects import Subjects

__all__ = ["PublishPipeline", "Sealer", "Sender"]

Sealer = Callable[[Outgoing, dict[str, str], bytes], None]
"""A middleware's `Middleware.seal`, bound: adds headers made from the encoded message."""


class Sender(Protocol):
    """What the pipeline needs of an agent that sends: the codec of its messages."""

    @property
    def content_type(self) -> str | None:
        """The agent's codec (`aclbus.Agent.content_type`); None: the bus' default."""
        ...


class PublishPipeline:
    """Publishes and requests of one bus, through its middleware, encoded, to its backend.

    Args:
        settings: The bus' settings (size and hop limits, the request timeout).
        subjects: The bus' subjects.
        codecs: The body codecs.
        backend: The backend messages go to.
        stats: The bus' counters (``published``, ``requests``).
        senders: The bus' agents by id, whose `Sender.content_type` applies to what they send.

    Attributes:
        publish: The publish chain: ``await publish(out)`` returns the backend's ack.
        request: The request chain: ``await request(out)`` returns the decoded reply. Callers
            hold one of `request_slots` around it.
        request_slots: ``settings.max_requests_in_flight`` slots, one per waiting request.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        subjects: Subjects,
        codecs: CodecRegistry,
        backend: Backend,
        stats: BusStats,
        senders: Mapping[str, Sender],
    ) -> None:
        self.settings = settings
        self.subjects = subjects
        self.codecs = codecs
        self.backend = backend
        self.stats = stats
        self.senders = senders
        self.request_slots = asyncio.Semaphore(settings.max_requests_in_flight)
        self.publish: PublishNext = self._publish_terminal
        self.request: RequestNext = self._request_terminal
        self._sealers: tuple[Sealer, ...] = ()

    def compose(self, middlewares: Sequence[Middleware]) -> None:
        """Put ``middlewares`` around the terminal steps (at start; the first is outermost).

        Their `Middleware.seal` methods, where they override it, run after encoding, the
        innermost first.
        """
        self.publish = compose(middlewares, "publish", self._publish_terminal)
        self.request = compose(middlewares, "request", self._request_terminal)
        self._sealers = tuple(
            mw.seal for mw in reversed(middlewares) if type(mw).seal is not Middleware.seal
        )

    def encode(self, out: Outgoing) -> tuple[dict[str, str], bytes]:
        """The headers and body of ``out``, its middleware headers included.

        Raises:
            MessageTooLarge: Over ``settings.max_message_bytes``.
            EncodeError: No codec for its content type, or the payload cannot be encoded.
        """
        limit = self.settings.max_message_bytes
        content_type = out.content_type
        if content_type is None:
            sender = self.senders.get(out.message.sender_id)
            content_type = sender.content_type if sender is not None else None
        if not out.headers and not self._sealers:
            return wire.encode(out.message, self.codecs, content_type=content_type, max_bytes=limit)
        # Middleware headers travel too: the receiver counts them, so the limit must as well.
        headers, body = wire.encode(out.message, self.codecs, content_type=content_type)
        if out.headers:
            headers.update(out.headers)
        for seal in self._sealers:
            seal(out, headers, body)
        size = wire.encoded_size(headers, body)
        if size > limit:
            raise MessageTooLarge(size, limit)
        return headers, body

    def _check_hops(self, msg: ACLMessage) -> None:
        limit = self.settings.max_hops
        if limit is not None and msg.hops > limit:
            raise HopLimitExceeded(msg.message_id, msg.hops, limit, msg.caused_by)

    async def _publish_terminal(self, out: Outgoing) -> PublishAck:
        self._check_hops(out.message)
        headers, body = self.encode(out)
        msg = out.message
        persistent = out.mode is DeliveryMode.AT_LEAST_ONCE
        ack = await self.backend.publish(
            out.subject,
            headers,
            body,
            mode=out.mode,
            msg_id=(out.msg_id or msg.message_id) if persistent else None,
            ttl=msg.ttl,
        )
        self.stats.published += 1
        return ack

    async def _request_terminal(self, out: Outgoing) -> ACLMessage:
        self._check_hops(out.message)
        headers, body = self.encode(out)
        self.stats.requests += 1
        reply = await self.backend.request(
            out.subject, headers, body, timeout=out.timeout or self.settings.request_timeout
        )
        return wire.decode(reply.headers, reply.body, self.codecs)
