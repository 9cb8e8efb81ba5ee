"""The gateway's webhooks: registered, kept in KV, reloaded at start, delivered to.

`Webhooks.extend` adds them to a starting `Gateway`: a set-up that gives each hosted agent
the dispatching handler, a start step that reloads the registrations from the KV bucket and
hosts their agents again (with their topics and groups), and a stop step.
"""

from __future__ import annotations

import asyncio
import logging

from aclbus import Agent, Delivery
from aclbus.errors import ACLBusError, InvalidIdentifier
from aclbus.subjects import validate_id
from aclbus_gateway.state import Gateway
from aclbus_gateway.webhooks.delivery import Poster
from aclbus_gateway.webhooks.dispatch import Dispatcher
from aclbus_gateway.webhooks.hosts import host_allowed
from aclbus_gateway.webhooks.model import Registration, WebhookRequest
from aclbus_gateway.webhooks.store import RegistrationStore

__all__ = ["BadFilter", "TooManyWebhooks", "Webhooks", "WebhooksUnavailable"]

log = logging.getLogger("aclbus.gateway")


class BadFilter(ACLBusError):
    """A filter that is well-formed but cannot be used for this agent.

    Attributes:
        field: The filter's field (``group``).
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(problem)


class TooManyWebhooks(ACLBusError):
    """An agent has as many webhooks as ``webhooks_per_agent`` allows."""


class WebhooksUnavailable(ACLBusError):
    """The backend has no key-value store, where registrations are kept."""


class Webhooks:
    """The webhooks of one gateway (``gateway.extensions["webhooks"]``).

    Args:
        gateway: The gateway.
    """

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._store = RegistrationStore(gateway.bus)
        self._poster = Poster(gateway.settings)
        self._by_agent: dict[str, dict[str, Registration]] = {}
        self._changing = asyncio.Lock()
        self.dispatcher = Dispatcher(gateway.bus, gateway.settings, self.of, self._poster)

    @classmethod
    def extend(cls, gateway: Gateway) -> Webhooks:
        """Add webhooks to a gateway before it hosts any agent; `start` them next."""
        webhooks = cls(gateway)
        gateway.extensions["webhooks"] = webhooks
        gateway.agent_setups.append(webhooks.setup_agent)
        return webhooks

    @property
    def available(self) -> bool:
        """Whether registrations can be kept (the backend has a key-value store)."""
        return self._gateway.bus.backend.capabilities.kv

    def of(self, agent: str) -> list[Registration]:
        """The webhooks of ``agent``, oldest first."""
        return list(self._by_agent.get(agent, {}).values())

    def get(self, webhook_id: str) -> Registration | None:
        """The webhook ``webhook_id``, whoever's it is, or None."""
        for registrations in self._by_agent.values():
            found = registrations.get(webhook_id)
            if found is not None:
                return found
        return None

    async def setup_agent(self, agent: Agent) -> None:
        """Give a hosted agent the handler that takes all its messages to its webhooks."""
        dispatcher = self.dispatcher

        async def to_webhooks(msg: object, delivery: Delivery) -> None:
            await dispatcher.deliver(delivery.agent, delivery.message, delivery)

        agent.on()(to_webhooks)

    async def start(self) -> None:
        """Reload the registrations and host their agents again."""
        if not self.available:
            return
        ack_wait = self._gateway.bus.settings.ack_wait
        if self._gateway.settings.webhook_timeout >= ack_wait:
            log.warning(
                "ACLBUS_GATEWAY__WEBHOOK_TIMEOUT (%g s) is not under ACLBUS_ACK_WAIT (%g s): "
                "a slow webhook's message is redelivered while its POST runs",
                self._gateway.settings.webhook_timeout,
                ack_wait,
            )
        await self._poster.start()
        stored = await self._store.load()
        for registration in sorted(stored, key=lambda r: (r.created, r.id)):  # oldest first
            self._by_agent.setdefault(registration.agent, {})[registration.id] = registration
        for agent in list(self._by_agent):
            try:
                await self._host(agent)
            except Exception as exc:  # one agent's trouble must not keep the gateway down
                log.error("webhooks of agent %s not resumed: %s", agent, type(exc).__name__)
        if self._by_agent:
            count = sum(len(r) for r in self._by_agent.values())
            log.info("resumed %d webhooks of %d agents", count, len(self._by_agent))

    async def stop(self) -> None:
        """Stop making POSTs (those under way fail; their messages come back after a restart)."""
        await self._poster.stop()

    async def register(self, agent: str, request: WebhookRequest) -> Registration:
        """Register a webhook for ``agent``: stored, then its agent hosted with its filters.

        Raises:
            WebhooksUnavailable: The backend has no key-value store.
            BadFilter: The URL's host is not allowed (``webhook_hosts``), or the group is too
                long to make the agent's consumer name with it.
            TooManyWebhooks: The agent has ``webhooks_per_agent`` webhooks already.
        """
        if not self.available:
            raise WebhooksUnavailable(
                f"backend {self._gateway.bus.backend.name!r} has no key-value store to keep "
                "webhooks in: use a backend with one (nats)"
            )
        validate_id(agent)
        if not host_allowed(str(request.url), self._gateway.settings.webhook_hosts):
            raise BadFilter("url", "its host is not one ACLBUS_GATEWAY__WEBHOOK_HOSTS allows")
        if request.group is not None:
            try:  # the group consumer's name holds the group and the agent: it may not fit
                name = self._gateway.bus.subjects.durable("group", request.group, agent)
                validate_id(name, "durable consumer name", remember=False)
            except InvalidIdentifier as exc:
                raise BadFilter(
                    "group", f"group {request.group[:40]!r}… is too long for agent {agent!r}: {exc}"
                ) from None
        limit = self._gateway.settings.webhooks_per_agent
        async with self._changing:
            mine = self._by_agent.setdefault(agent, {})
            if len(mine) >= limit:
                raise TooManyWebhooks(
                    f"agent {agent!r} has {len(mine)} webhooks, the most "
                    "ACLBUS_GATEWAY__WEBHOOKS_PER_AGENT allows: delete one first"
                )
            registration = Registration.make(agent, request)
            await self._store.add(registration)
            mine[registration.id] = registration
            try:
                await self._host(agent)
            except BaseException:
                del mine[registration.id]
                await self._store.remove(registration)
                raise
        return registration

    async def delete(self, registration: Registration) -> None:
        """Delete a webhook; a topic no other webhook of its agent needs is unsubscribed.

        The agent stays in a group it joined for the webhook: membership is the agent's
        (``DELETE /communication/groups/{group}/leave`` ends it).
        """
        async with self._changing:
            await self._store.remove(registration)
            mine = self._by_agent.get(registration.agent, {})
            mine.pop(registration.id, None)
            self._poster.forget(registration.id)
            topic = registration.topic
            agent = self._gateway.bus.agents.get(registration.agent)
            if (
                topic is not None
                and agent is not None
                and topic in agent.topics
                and all(r.topic != topic for r in mine.values())
            ):
                await agent.unsubscribe(topic)

    async def _host(self, agent_id: str) -> None:
        """Host ``agent_id`` and give it the topics and groups its webhooks filter on."""
        agent = await self._gateway.agent(agent_id)
        for registration in self.of(agent_id):
            if registration.topic is not None and registration.topic not in agent.topics:
                await agent.subscribe(registration.topic)
            if registration.group is not None and registration.group not in agent.groups:
                await agent.join(registration.group)
