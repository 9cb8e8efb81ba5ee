"""The way in: decode, route, the consume middleware chain, the handler, settle.

`ConsumePipeline.handler_for` makes the function a backend calls with each delivery for one
agent. It decodes the message (`aclbus.wire.decode`), drops what has expired or passed the
hop limit, asks the agent for the route (`RouteTable.route`), and runs the consume chain:
middleware first, then `dispatch`, which calls the handler, sends what it returns and
acknowledges what the handler left unsettled. What fails on the way is settled for good by
`give_up` (the dead-letter queue, then a term), and the sender is told where it can be.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from pydantic import BaseModel, ValidationError

from aclbus import wire
from aclbus.acl import ACLMessage, Performative
from aclbus.backend import Backend, DeliveryHandler, DeliveryMode, PublishAck, Received
from aclbus.codec import CodecRegistry
from aclbus.dlq import DeadLetters, Reason
from aclbus.errors import (
    ACLDecodeError,
    ConfigurationError,
    HopLimitExceeded,
    InvalidPayload,
    MalformedHeaders,
)
from aclbus.handling import Delivery, Route
from aclbus.middleware import ConsumeNext, Middleware, Outgoing, compose
from aclbus.pipeline.publish import PublishPipeline
from aclbus.pipeline.refusals import refusal_answer
from aclbus.redaction import redact
from aclbus.settings import Settings
from aclbus.stats import BusStats
from aclbus.subjects import Subjects

__all__ = ["ConsumePipeline", "RouteTable"]

log = logging.getLogger("aclbus")


class RouteTable(Protocol):
    """What the pipeline needs of an agent: its id and which handler takes a message."""

    @property
    def id(self) -> str:
        """The agent's id."""
        ...

    def route(self, msg: ACLMessage) -> Route | None:
        """The route that handles ``msg``, or None (`aclbus.Agent.route`)."""
        ...


class ConsumePipeline:
    """Deliveries to one bus' agents, from the backend to their handlers and settled.

    Args:
        settings: The bus' settings (limits, ``expired``, ``ack_wait``).
        subjects: The bus' subjects (which deliveries reach many agents).
        codecs: The body codecs.
        backend: The bus' backend (whether dead letters can be stored).
        stats: The bus' counters.
        dead_letters: The bus' dead-letter queue.
        publisher: The bus' publish pipeline, for replies to a waiting requester.
        send: The bus' `aclbus.Bus.send`, for replies to the receivers they name.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        subjects: Subjects,
        codecs: CodecRegistry,
        backend: Backend,
        stats: BusStats,
        dead_letters: DeadLetters,
        publisher: PublishPipeline,
        send: Callable[[ACLMessage], Awaitable[list[PublishAck]]],
    ) -> None:
        self.settings = settings
        self.subjects = subjects
        self.codecs = codecs
        self.backend = backend
        self.stats = stats
        self.dead_letters = dead_letters
        self.publisher = publisher
        self.send = send
        self._chain: ConsumeNext = self.dispatch

    def compose(self, middlewares: Sequence[Middleware]) -> None:
        """Put ``middlewares`` around `dispatch` (at start; the first is outermost)."""
        self._chain = compose(middlewares, "consume", self.dispatch)

    @property
    def has_middleware(self) -> bool:
        """Whether any middleware wraps consuming (else the handler is called directly)."""
        return self._chain != self.dispatch

    def handler_for(self, agent: RouteTable) -> DeliveryHandler:
        """The function the backend calls with each delivery for ``agent``."""
        agent_id = agent.id

        async def on_delivery(received: Received) -> None:
            self.stats.delivered += 1
            try:
                msg = wire.decode(
                    received.headers,
                    received.body,
                    self.codecs,
                    max_bytes=self.settings.max_message_bytes,
                )
            except ACLDecodeError as exc:
                await self._refuse(received, agent_id, exc)
                return
            if msg.ttl is not None and msg.is_expired():
                self.stats.expired += 1
                if self.settings.expired == "drop":
                    await received.term(Reason.EXPIRED)
                else:
                    await self.give_up(received, agent=agent_id, reason=Reason.EXPIRED)
                return
            limit = self.settings.max_hops
            if limit is not None and msg.hops > limit:
                error = HopLimitExceeded(msg.message_id, msg.hops, limit, msg.caused_by)
                log.warning("agent %s: %s", agent_id, error)
                await self.give_up(received, agent=agent_id, reason=Reason.HOP_LIMIT, error=error)
                return
            delivery = Delivery(msg, received, agent_id)
            try:
                route = delivery.route = agent.route(msg)  # a `where=` predicate may raise
            except Exception as exc:
                await self.failed(delivery, exc)
                return
            if route is not None and route.batch is not None:
                await route.batch.add(delivery)  # its batch runs the chain (see aclbus.batches)
                return
            try:  # `consume`, written out: one coroutine less per message
                await self._chain(delivery)
            except Exception as exc:
                await self.failed(delivery, exc)

        return on_delivery

    async def consume(self, delivery: Delivery) -> None:
        """Run a routed delivery through the consume chain; a failure fails the delivery."""
        try:
            await self._chain(delivery)
        except Exception as exc:
            await self.failed(delivery, exc)

    async def failed(self, delivery: Delivery, exc: Exception) -> None:
        """A handler (or middleware) raised: count and log it, answer, give the message up."""
        self.stats.failed += 1
        log.warning(
            "agent %s: handling message %s failed: %s: %s",
            delivery.agent,
            delivery.message.message_id,
            type(exc).__name__,
            redact(str(exc)),  # an exception's text may hold a credential
        )
        await self._fail(delivery, exc)

    async def dispatch(self, delivery: Delivery) -> None:
        """The innermost step of the consume chain: call the handler, send its reply, ack."""
        route = delivery.route
        if route is None:
            self.stats.unhandled += 1
            await self.not_understood(delivery, "no handler for this message")
            await delivery.ack()
            return
        if route.payload is not None and not await self.typed(delivery):
            return
        if route.server is not None:
            await route.server(route, delivery)
            self.stats.handled += 1
            if delivery.received.settled is None:
                await delivery.ack()
            return
        # The handler called here and `finish` written out: two coroutines less per message.
        if route.batch is not None:
            result = await route.batch.arrive(delivery)
        elif route.takes_delivery:
            result = await route.func(delivery.message, delivery)
        else:
            result = await route.func(delivery.message)
        received = delivery.received
        if result is not None:
            await self.send_result(result, received)
        self.stats.handled += 1
        if received.settled is None:
            await received.ack()

    async def typed(self, delivery: Delivery) -> bool:
        """Give the message its route's payload model; False if the payload does not fit.

        A payload that does not fit is answered and dead-lettered here.
        """
        model = delivery.route.payload if delivery.route is not None else None
        if model is None:
            return True
        try:
            typed = model.model_validate(delivery.message.payload)
        except ValidationError as exc:
            await self._invalid_payload(delivery, model, exc)
            return False
        delivery.message = delivery.message.model_copy(update={"payload": typed})
        return True

    async def finish(self, delivery: Delivery, result: ACLMessage | None) -> None:
        """After the handler: send its reply, count it, acknowledge what it left unsettled."""
        if result is not None:
            await self.send_result(result, delivery.received)
        self.stats.handled += 1
        if delivery.received.settled is None:
            await delivery.ack()

    async def send_result(self, result: ACLMessage, received: Received) -> None:
        """Send what a handler returned: to a waiting requester, else to its receivers.

        Raises:
            TypeError: ``result`` is not an `aclbus.ACLMessage`.
            ConfigurationError: It names no receiver and nobody awaits it.
        """
        if not isinstance(result, ACLMessage):
            raise TypeError(f"a handler returned {type(result).__name__}, not an ACLMessage")
        if received.reply:
            await self.publisher.publish(
                Outgoing(result, received.reply, DeliveryMode.AT_MOST_ONCE)
            )
        elif result.all_receivers:
            await self.send(result)
        else:
            raise ConfigurationError("a handler's reply names no receiver and nobody awaits it")

    async def not_understood(self, delivery: Delivery, reason: str) -> None:
        """Answer a message nobody here handles with ``not-understood`` (unless it reached many)."""
        msg = delivery.message
        if msg.performative is Performative.NOT_UNDERSTOOD or self.subjects.reaches_many(
            delivery.subject
        ):
            return  # never answer a not-understood, nor a broadcast nobody here handles
        reply = msg.reply(
            Performative.NOT_UNDERSTOOD,
            payload={"reason": reason, "performative": msg.performative.value},
            sender_id=delivery.agent,
        )
        await self.send_result(reply, delivery.received)

    async def give_up(
        self,
        received: Received,
        *,
        agent: str,
        reason: str,
        error: BaseException | None = None,
        handler: str | None = None,
    ) -> None:
        """Settle a delivery for good: dead-letter it (if persistent), then terminate it.

        The dead letter is stored before the message is terminated; if it cannot be stored,
        the message is not terminated but handed back for a later redelivery, so nothing is
        lost.

        Args:
            received: The delivery.
            agent: The agent it was for.
            reason: Why (see `aclbus.dlq.Reason`).
            error: The exception that made it fail, if any.
            handler: The failing handler's name, if any.
        """
        if received.settled is not None:
            return
        term_reason = redact(
            f"{reason}: {type(error).__name__}: {error}" if error is not None else reason
        )
        if received.mode is DeliveryMode.AT_LEAST_ONCE and self.backend.capabilities.persistent:
            try:
                await self.dead_letters.add(
                    received, origin=agent, reason=reason, error=error, handler=handler
                )
            except Exception as exc:
                log.error(
                    "agent %s: could not dead-letter a message (%s: %s); it will be redelivered",
                    agent,
                    type(exc).__name__,
                    redact(str(exc)),
                )
                await received.nack(delay=self.settings.ack_wait)
                return
        await received.term(term_reason)

    async def _fail(self, delivery: Delivery, exc: Exception) -> None:
        """A handler raised: answer a waiting requester with ``failure``, then terminate."""
        if delivery.received.reply:
            msg = delivery.message
            failure = msg.reply(
                Performative.FAILURE,
                payload={"error": type(exc).__name__, "message": redact(str(exc))[:500]},
                sender_id=msg.receiver_id or delivery.agent,
                # nobody answers a failure: it must get through even when the request was at
                # the hop limit (the error may be that very limit)
                hops=msg.hops,
            )
            try:
                await self.publisher.publish(
                    Outgoing(failure, delivery.received.reply, DeliveryMode.AT_MOST_ONCE)
                )
            except Exception:
                log.exception("agent %s: could not send the failure reply", delivery.agent)
        await self.give_up(
            delivery.received,
            agent=delivery.agent,
            reason=Reason.HOP_LIMIT if isinstance(exc, HopLimitExceeded) else Reason.HANDLER_ERROR,
            error=exc,
            handler=delivery.route.func.__qualname__ if delivery.route else None,
        )

    async def _invalid_payload(
        self, delivery: Delivery, model: type[BaseModel], exc: ValidationError
    ) -> None:
        """A payload that fails its handler's model: tell the sender, dead-letter it."""
        errors: list[dict[str, object]] = [
            {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()
        ]
        error = InvalidPayload(model.__name__, errors)
        self.stats.failed += 1
        log.warning(
            "agent %s: refused message %s: %s", delivery.agent, delivery.message.message_id, error
        )
        msg = delivery.message
        # As for a message that cannot be decoded: one bad broadcast must not make every
        # agent answer, and a not-understood is never answered.
        if msg.performative is not Performative.NOT_UNDERSTOOD and not self.subjects.reaches_many(
            delivery.subject
        ):
            reply = msg.reply(
                Performative.NOT_UNDERSTOOD,
                payload={"reason": str(error), "model": model.__name__, "errors": errors[:20]},
                sender_id=delivery.agent,
            )
            try:
                await self.send_result(reply, delivery.received)
            except Exception as send_error:
                log.warning(
                    "agent %s: could not answer not-understood: %s", delivery.agent, send_error
                )
        await self.give_up(
            delivery.received,
            agent=delivery.agent,
            reason=Reason.INVALID_PAYLOAD,
            error=error,
            handler=delivery.route.func.__qualname__ if delivery.route else None,
        )

    async def _refuse(self, received: Received, agent_id: str, exc: ACLDecodeError) -> None:
        """A delivery that is not a valid message: dead-letter it, tell the sender if we can.

        A header block that breaks the block's rules is dead-lettered as ``malformed-headers``,
        anything else as ``malformed``; `refusal_answer` says who is told.
        """
        self.stats.decode_errors += 1
        log.warning(
            "agent %s: refused a malformed message on %s: %s",
            agent_id,
            received.subject,
            redact(str(exc)),  # it quotes header values, which the sender chose
        )
        reason = Reason.MALFORMED_HEADERS if isinstance(exc, MalformedHeaders) else Reason.MALFORMED
        await self.give_up(received, agent=agent_id, reason=reason, error=exc)
        try:
            answer = refusal_answer(received, agent_id, exc, self.subjects)
            if answer is not None:
                await self.send_result(answer, received)
        except Exception as error:
            log.warning(
                "agent %s: could not answer not-understood: %s", agent_id, redact(str(error))
            )
