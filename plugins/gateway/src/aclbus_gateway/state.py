"""The gateway's running state: its bus, its settings and the agents it hosts for callers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Request

if TYPE_CHECKING:
    from aclbus import Agent, Bus
    from aclbus_gateway.settings import GatewaySettings

__all__ = ["AgentSetup", "Gateway", "LifecycleStep", "current_gateway"]

AgentSetup = Callable[["Agent"], Awaitable[None]]
"""Called with each agent the gateway starts for a caller, before it starts (adds handlers)."""

LifecycleStep = Callable[[], Awaitable[None]]
"""A step of the gateway's start or stop (reload webhooks at start, stop deliveries at stop)."""


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
        agent_setups: What runs on each hosted agent before it starts.
        extensions: State the route modules keep (webhook dispatcher, streams), by name.
        on_start: Run in order once the bus is started, before the first request.
        on_stop: Run in reverse order when the application stops, before the bus stops.
    """

    bus: Bus
    settings: GatewaySettings
    agent_setups: list[AgentSetup] = field(default_factory=list)
    extensions: dict[str, Any] = field(default_factory=dict)
    on_start: list[LifecycleStep] = field(default_factory=list)
    on_stop: list[LifecycleStep] = field(default_factory=list)
    _hosting: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

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
            return agent

    async def start(self) -> None:
        """Run the ``on_start`` steps, in order (the application's lifespan calls it)."""
        for step in self.on_start:
            await step()

    async def stop(self) -> None:
        """Run the ``on_stop`` steps in reverse order; one that fails does not stop the rest."""
        errors: list[BaseException] = []
        for step in reversed(self.on_stop):
            try:
                await step()
            except Exception as exc:  # the bus must still stop after a failed step
                errors.append(exc)
        if errors:
            raise errors[0]


def current_gateway(request: Request) -> Gateway:
    """The `Gateway` of the application serving ``request`` (a FastAPI dependency)."""
    gateway: Gateway = request.app.state.gateway
    return gateway
