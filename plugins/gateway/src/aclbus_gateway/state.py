"""The gateway's running state: its bus, its settings and the agents it hosts for callers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Request

from aclbus_gateway.counters import RequestCounters
from aclbus_gateway.tokens import TokenTable

if TYPE_CHECKING:
    from aclbus import Agent, Bus
    from aclbus_gateway.settings import GatewaySettings

__all__ = ["AgentSetup", "Gateway", "GatewayService", "current_gateway"]

AgentSetup = Callable[["Agent"], Awaitable[None]]
"""Called with each agent the gateway starts for a caller, before it starts (adds handlers)."""

GatewayService = Callable[["Gateway"], AbstractAsyncContextManager[None]]
"""Something that runs while the gateway runs (a webhook dispatcher, say): entered once the
`Gateway` is made on its started bus, in the order of ``aclbus_gateway.routes.SERVICES``, and
exited in reverse order before the bus stops."""


@dataclass
class Gateway:
    """What the routes share: the bus the gateway speaks through, and its settings.

    A caller that only sends needs no agent of its own on the gateway's bus. One that joins a
    group, registers a webhook or follows its stream has one: `agent` makes and starts it once,
    after every `AgentSetup` in ``agent_setups`` ran on it (that is where the webhook and stream
    modules attach their handlers).

    Attributes:
        bus: The started bus.
        settings: The gateway's settings.
        tokens: The bearer tokens, by agent (from ``tokens`` and ``tokens_file``).
        allowed_agents: The agents the bus' policy user may act as; None: any agent (no
            policy, or an admin user).
        counters: The gateway's own request counters (``/communication/statistics``).
        agent_setups: What runs on each hosted agent before it starts.
        extensions: State the route modules keep (webhook dispatcher, streams), by name.
    """

    bus: Bus
    settings: GatewaySettings
    tokens: TokenTable = field(default_factory=lambda: TokenTable({}))
    counters: RequestCounters = field(default_factory=RequestCounters)
    allowed_agents: frozenset[str] | None = None
    agent_setups: list[AgentSetup] = field(default_factory=list)
    extensions: dict[str, Any] = field(default_factory=dict)
    _hosting: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    _hosted: list[str] = field(default_factory=list, repr=False)

    @property
    def hosted(self) -> tuple[str, ...]:
        """The ids of the agents this gateway started for its callers, in starting order."""
        return tuple(self._hosted)

    async def agent(self, agent_id: str) -> Agent:
        """The started agent ``agent_id`` on the gateway's bus, made on first use."""
        async with self._hosting:
            existing = self.bus.agents.get(agent_id)
            if existing is not None and existing.started:
                return existing
            agent = self.bus.agent(agent_id)
            for setup in self.agent_setups:
                await setup(agent)
            await agent.start()
            if agent_id not in self._hosted:
                self._hosted.append(agent_id)
            return agent

    async def close(self) -> None:
        """Stop the agents the gateway hosts (their durable inboxes keep their messages)."""
        async with self._hosting:
            hosted, self._hosted = self._hosted, []
            for agent_id in reversed(hosted):
                if agent_id in self.bus.agents:
                    await self.bus.remove_agent(agent_id)


def current_gateway(request: Request) -> Gateway:
    """The `Gateway` of the application serving ``request`` (a FastAPI dependency)."""
    gateway: Gateway = request.app.state.gateway
    return gateway
