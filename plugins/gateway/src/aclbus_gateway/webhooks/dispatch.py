"""A hosted agent's messages to its webhooks: POST, then ack, retry later, or dead-letter.

Each agent the gateway hosts has one handler (`Dispatcher.deliver`) that takes every message
it gets. The message is POSTed to each of the agent's webhooks whose filters it passes; when
all answer 2xx it is acknowledged. When one does not, the message is handed back to the bus
(``nack`` with a backoff delay), so the wait between attempts is the broker's redelivery
timer, not a task of this process: a gateway that dies mid-retry loses nothing, the message
comes back to the next one. Webhooks that already took the message are not POSTed again on a
retry (while this process remembers it). Once the attempt budget is spent the message is
dead-lettered (reason ``attempts-exhausted``, error `WebhookUndeliverable`) and terminated.

Deliveries that the broker does not store (``at_most_once``: requests, live topics) cannot be
handed back: their attempts are made here, in turn, and when they run out the message is
dropped with a warning.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence

from aclbus import ACLMessage, Bus, Delivery
from aclbus.dlq import Reason
from aclbus.errors import ACLBusError
from aclbus.specs import DeliveryMode
from aclbus_gateway.envelope import envelope_bytes
from aclbus_gateway.settings import GatewaySettings
from aclbus_gateway.webhooks.delivery import Outcome, Poster, backoff_delay
from aclbus_gateway.webhooks.model import Registration

__all__ = ["Dispatcher", "WebhookUndeliverable", "delivery_id"]

log = logging.getLogger("aclbus.gateway")

_REMEMBERED = 10_000
"""(webhook, message) pairs delivered, remembered so that a retry skips them."""


class WebhookUndeliverable(ACLBusError):
    """A message that webhooks did not take within the attempt budget (its dead letter's error).

    Attributes:
        webhooks: The ids of the webhooks that did not take it.
        attempts: The attempts made.
    """

    def __init__(self, failures: Sequence[tuple[Registration, Outcome]], attempts: int) -> None:
        self.webhooks = tuple(r.id for r, _ in failures)
        self.attempts = attempts
        last = "; ".join(f"webhook {r.id}: {o.problem}" for r, o in failures)
        super().__init__(f"{attempts} attempts failed, the last: {last}")


def delivery_id(registration: Registration, msg: ACLMessage) -> str:
    """The dedup key of ``msg`` to ``registration``: the same on every attempt and replay."""
    return f"{registration.id}.{msg.message_id}"


class Dispatcher:
    """What the hosted agents' handler does with a message.

    Args:
        bus: The gateway's bus (its DLQ, its ``max_deliver``, its subjects).
        settings: The gateway's settings (attempts, backoff).
        webhooks_of: The current webhooks of an agent.
        poster: Makes the POSTs.
    """

    def __init__(
        self,
        bus: Bus,
        settings: GatewaySettings,
        webhooks_of: Callable[[str], Sequence[Registration]],
        poster: Poster,
    ) -> None:
        self._bus = bus
        self._settings = settings
        self._webhooks_of = webhooks_of
        self._poster = poster
        self._delivered: OrderedDict[str, None] = OrderedDict()

    @property
    def budget(self) -> int:
        """Attempts per message: ``webhook_attempts``, at most the bus' ``max_deliver``.

        Past ``max_deliver`` the broker would stop redelivering on its own; the budget ends
        first, so the dead letter says why.
        """
        cap = self._bus.settings.max_deliver
        attempts = self._settings.webhook_attempts
        return attempts if cap is None else min(attempts, cap)

    def matching(self, agent: str, msg: ACLMessage, subject: str) -> list[Registration]:
        """The webhooks of ``agent`` that ``msg``, delivered on ``subject``, is for."""
        found = []
        for registration in self._webhooks_of(agent):
            group = registration.group
            on_group = group if group and subject == self._bus.subjects.group(group) else None
            if registration.matches(msg, on_group):
                found.append(registration)
        return found

    async def deliver(self, agent: str, msg: ACLMessage, delivery: Delivery) -> None:
        """POST ``msg`` to the webhooks it is for; settle the delivery by how that went."""
        targets = self.matching(agent, msg, delivery.subject)
        if not targets:
            return  # acknowledged: the event stream still has it
        if not self._poster.running:
            # Stopping: no attempt is made, so none is spent; the next start gets it again.
            await delivery.nack(self._settings.webhook_backoff)
            return
        body = envelope_bytes(msg)
        attempt = delivery.attempt
        failures = await self._attempt(targets, msg, body, attempt)
        if delivery.received.mode is DeliveryMode.AT_MOST_ONCE:
            while failures and attempt < self.budget:
                await asyncio.sleep(backoff_delay(self._settings, attempt))
                attempt += 1
                failures = await self._attempt([r for r, _ in failures], msg, body, attempt)
            if failures:
                log.warning(
                    "agent %s: message %s dropped (not stored, so not dead-lettered): %s",
                    agent,
                    msg.message_id,
                    WebhookUndeliverable(failures, attempt),
                )
            return
        if not failures:
            return
        if attempt < self.budget:
            await delivery.nack(backoff_delay(self._settings, attempt))
            return
        await self._dead_letter(agent, delivery, failures, attempt)

    async def _attempt(
        self, targets: Sequence[Registration], msg: ACLMessage, body: bytes, attempt: int
    ) -> list[tuple[Registration, Outcome]]:
        """POST to the targets that have not taken ``msg`` yet; return the failures."""
        pending = [r for r in targets if delivery_id(r, msg) not in self._delivered]
        outcomes = await asyncio.gather(
            *(
                self._poster.post(r, body, delivery_id=delivery_id(r, msg), attempt=attempt)
                for r in pending
            )
        )
        failures = []
        for registration, outcome in zip(pending, outcomes, strict=True):
            if outcome.delivered:
                self._remember(delivery_id(registration, msg))
            else:
                failures.append((registration, outcome))
        return failures

    def _remember(self, key: str) -> None:
        self._delivered[key] = None
        while len(self._delivered) > _REMEMBERED:
            self._delivered.popitem(last=False)

    async def _dead_letter(
        self,
        agent: str,
        delivery: Delivery,
        failures: Sequence[tuple[Registration, Outcome]],
        attempts: int,
    ) -> None:
        error = WebhookUndeliverable(failures, attempts)
        msg_id = delivery.message.message_id
        log.warning("agent %s: message %s dead-lettered: %s", agent, msg_id, error)
        if self._bus.backend.capabilities.persistent:
            try:
                await self._bus.dead_letters.add(
                    delivery.received,
                    origin=agent,
                    reason=Reason.EXHAUSTED,
                    error=error,
                    handler=", ".join(f"webhook {r.id}" for r, _ in failures),
                )
            except Exception as exc:  # not stored: keep the message, try again later
                log.error(
                    "agent %s: could not dead-letter message %s (%s); it will be redelivered",
                    agent,
                    delivery.message.message_id,
                    type(exc).__name__,
                )
                await delivery.nack(self._bus.settings.ack_wait)
                return
        await delivery.term(f"{Reason.EXHAUSTED}: {error}")
