"""The consume middleware: retry a failed persistent delivery later, or give it up for good."""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any

from aclbus.backend import DeliveryMode
from aclbus.dlq import Reason, redact
from aclbus.errors import ConfigurationError
from aclbus.middleware import ConsumeNext, Delivery, Middleware
from aclbus_retry.heartbeat import Heartbeats, Timebase, timebase_for
from aclbus_retry.policies import RetryPolicy, handler_overrides, handler_progress_declared
from aclbus_retry.settings import RetrySettings

if TYPE_CHECKING:
    from aclbus import Bus

__all__ = ["Retry"]

log = logging.getLogger("aclbus.retry")

_AT_LEAST_ONCE = DeliveryMode.AT_LEAST_ONCE


class Retry(Middleware):
    """Retries failed ``at_least_once`` deliveries with backoff, then dead-letters them.

    When the handler (or an inner middleware) raises on a persistent delivery it did not
    settle itself:

    - the error is retryable and ``delivery.attempt`` is below the policy's ``max_attempts``
      (and the broker's ``max_deliver``): ``nack(delay=policy.delay(attempt))``;
    - otherwise: `aclbus.Bus.give_up`, which dead-letters the message with reason
      ``attempts-exhausted`` or ``not-retryable``, the attempts and the error, then
      terminates it.

    Either way the error goes on outward, so the bus counts and logs the failed attempt.
    ``at_most_once`` deliveries (requests, core broadcasts) are not retried: the bus answers a
    request's sender with ``failure`` at once.

    Args:
        bus: The bus the middleware serves.
        settings: The policies; None reads them (``ACLBUS_RETRY__*``, ``[retry]``).
        rng: The jitter's random numbers; None: seeded with ``settings.seed``.
        time: The heartbeats' time and timers; None: the backend's clock or the event loop.

    Attributes:
        bus: The bus it serves.
        settings: Its settings.
        heartbeats: The ``in_progress`` heartbeats of the deliveries in flight.

    Raises:
        ConfigurationError: A heartbeat interval is not below ``ack_wait`` (it would not keep
            a long handler's message from being redelivered).
    """

    def __init__(
        self,
        bus: Bus,
        settings: RetrySettings | None = None,
        *,
        rng: random.Random | None = None,
        time: Timebase | None = None,
    ) -> None:
        self.bus = bus
        self.settings = settings if settings is not None else RetrySettings()
        self._rng = rng if rng is not None else random.Random(self.settings.seed)
        self.heartbeats = Heartbeats(time if time is not None else timebase_for(bus.backend))
        self._ack_wait = bus.settings.ack_wait
        self._max_deliver = bus.settings.max_deliver
        self._agent_policies: dict[str, RetryPolicy] = {}
        self._handler_policies: dict[tuple[str, Any], RetryPolicy] = {}
        configured = [("default", self.settings.policy())] + [
            (f"agent {agent!r}", self.settings.policy(agent)) for agent in self.settings.agents
        ]
        self._beats_configured = False
        for where, policy in configured:
            self._check(where, policy)
            self._beats_configured = self._beats_configured or policy.progress_interval is not None

    def _check(self, where: str, policy: RetryPolicy) -> None:
        interval = policy.heartbeat(self._ack_wait)
        if interval is not None and interval >= self._ack_wait:
            raise ConfigurationError(
                f"retry progress_interval of the {where} policy is {interval:g} s, not below "
                f"ack_wait ({self._ack_wait:g} s): the broker would redeliver before the first "
                "heartbeat. Use 'auto' (ack_wait / 3) or a shorter interval."
            )
        if self._max_deliver is not None and policy.max_attempts > self._max_deliver:
            log.warning(
                "retry: the %s policy allows %d attempts but the broker delivers a message at "
                "most max_deliver=%d times; messages are given up after %d attempts "
                "(raise ACLBUS_MAX_DELIVER to allow more)",
                where,
                policy.max_attempts,
                self._max_deliver,
                self._max_deliver,
            )

    # -- the policy of a delivery ---------------------------------------------------------

    def policy_for(self, delivery: Delivery) -> RetryPolicy:
        """The policy that applies to ``delivery``: handler over agent over default, by field."""
        agent_id = delivery.agent
        base = self._agent_policies.get(agent_id)
        if base is None:
            base = self._agent_policies[agent_id] = self.settings.policy(agent_id)
        route = delivery.route
        if route is None:
            return base
        overrides = handler_overrides(route.func)
        if not overrides:
            return base
        key = (agent_id, route.func)
        merged = self._handler_policies.get(key)
        if merged is None:
            merged = self._handler_policies[key] = base.merged(overrides)
            interval = merged.heartbeat(self._ack_wait)
            if interval is not None and interval >= self._ack_wait:
                log.warning(
                    "retry: handler %s asks for heartbeats every %g s, not below ack_wait "
                    "(%g s): its messages are redelivered while it runs; use 'auto'",
                    getattr(route.func, "__qualname__", route.func),
                    interval,
                    self._ack_wait,
                )
        return merged

    # -- consuming ------------------------------------------------------------------------

    async def consume(self, delivery: Delivery, call_next: ConsumeNext) -> None:
        """Run the handler; on failure retry the delivery later or give it up."""
        if delivery.received.mode is not _AT_LEAST_ONCE:
            await call_next(delivery)  # a request fails at once: the bus answers `failure`
            return
        interval: float | None = None
        if self._beats_configured or handler_progress_declared():
            interval = self.policy_for(delivery).heartbeat(self._ack_wait)
            if interval is not None:
                self.heartbeats.start(delivery, interval)
        try:
            await call_next(delivery)
        except Exception as exc:
            if interval is not None:
                self.heartbeats.stop(delivery, interval)
            if delivery.settled is None:  # a handler that settled itself knew what it wanted
                await self._failed(delivery, exc)
            raise
        finally:
            if interval is not None:
                self.heartbeats.stop(delivery, interval)

    @staticmethod
    def _retryable(policy: RetryPolicy, exc: Exception) -> bool:
        try:
            return policy.retryable(exc)
        except Exception as bug:  # a retry_on predicate that fails: retry, as by default
            log.error(
                "retry: the retry_on predicate failed on %s (%s: %s); retrying",
                type(exc).__name__,
                type(bug).__name__,
                redact(str(bug)),
            )
            return True

    async def _failed(self, delivery: Delivery, exc: Exception) -> None:
        policy = self.policy_for(delivery)
        attempt = delivery.attempt
        limit = policy.max_attempts
        if self._max_deliver is not None and self._max_deliver < limit:
            limit = self._max_deliver  # the broker would not deliver it again anyway
        if not self._retryable(policy, exc):
            reason = Reason.NOT_RETRYABLE
        elif attempt >= limit:
            reason = Reason.EXHAUSTED
        else:
            delay = policy.delay(attempt, self._rng)
            log.info(
                "agent %s: message %s failed on attempt %d of %d (%s); retrying in %.3g s",
                delivery.agent,
                delivery.message.message_id,
                attempt,
                limit,
                type(exc).__name__,
                delay,
            )
            try:
                await delivery.nack(delay=delay)
            except Exception as nack_exc:
                log.error(
                    "agent %s: could not nack message %s (%s: %s); the broker redelivers it "
                    "after ack_wait",
                    delivery.agent,
                    delivery.message.message_id,
                    type(nack_exc).__name__,
                    redact(str(nack_exc)),
                )
            return
        log.info(
            "agent %s: giving up on message %s after %d attempt(s), %s: %s: %s",
            delivery.agent,
            delivery.message.message_id,
            attempt,
            reason,
            type(exc).__name__,
            redact(str(exc)),
        )
        try:
            await self.bus.give_up(
                delivery.received,
                agent=delivery.agent,
                reason=reason,
                error=exc,
                handler=delivery.route.func.__qualname__ if delivery.route else None,
            )
        except Exception as give_up_exc:
            log.error(
                "agent %s: could not give up message %s (%s: %s); the broker redelivers it "
                "after ack_wait",
                delivery.agent,
                delivery.message.message_id,
                type(give_up_exc).__name__,
                redact(str(give_up_exc)),
            )
