"""The Bus: settings, plugins and a backend wired together, with agents and the patterns on top.

Follow one message: `BusCore.send` (`aclbus.bus_core`) builds an `aclbus.middleware.Outgoing`
and hands it to the `aclbus.pipeline.PublishPipeline` (publish middleware → encode →
backend); the backend delivers it to the `aclbus.pipeline.ConsumePipeline` of the receiving
bus (decode → route → consume middleware → the `aclbus.Agent`'s handler → ack). This module
adds what is built on that: agents, streams, shared maps, the directory, scatter-gather.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from aclbus.acl import ACLMessage
from aclbus.agent import Agent, consumers_per_agent
from aclbus.backend import Backend
from aclbus.bus_core import BusCore
from aclbus.provisioning import provisioned_traffic
from aclbus.scatter import Gathered, gather
from aclbus.settings import Settings
from aclbus.stats import BusStats

if TYPE_CHECKING:
    from aclbus.directory import Directory
    from aclbus.shared import SharedMap
    from aclbus.streaming import ReplyStream

__all__ = ["Bus", "BusStats", "Gathered"]


class Bus(BusCore):
    """A connection to one backend, with agents, plugins and the messaging patterns.

    Everything of `BusCore` (sending, requests, the lifecycle, plugins, the pipelines), with
    the agents and the patterns built on it.

    Args:
        settings: The settings; None reads the environment, ``.env`` and ``aclbus.toml``.
        plugins: Extra plugin objects (with hookimpls), loaded after the installed ones.
        backend: A backend to use instead of making the one ``settings.backend`` names.
        entry_points: Whether to load plugins from the ``aclbus`` entry points.

    Raises:
        UnknownBackend: ``settings.backend`` names no registered backend.
        CapabilityError: A plugin needs a capability the backend lacks.
        PluginError: A plugin failed to load.
        TypeError: ``backend`` is not a `Backend` (a name goes in the settings).

    Example:
        ```python
        async with Bus(Settings(backend="memory")) as bus:
            worker = bus.agent("worker")

            @worker.on(Performative.REQUEST)
            async def handle(msg: ACLMessage) -> ACLMessage:
                return msg.reply(Performative.INFORM, payload={"ok": True})

            await worker.start()
            reply = await bus.request(ACLMessage(performative="request", sender_id="cli",
                                                 receiver_id="worker"))
        ```
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        plugins: Sequence[object] = (),
        backend: Backend | None = None,
        entry_points: bool = True,
    ) -> None:
        self._agents: dict[str, Agent] = {}
        super().__init__(
            settings,
            plugins=plugins,
            backend=backend,
            entry_points=entry_points,
            members=self._agents,
        )
        self._app: Any = None
        self._directory: Directory | None = None

    @property
    def app(self) -> Any:
        """A ``faststream.FastStream`` app that starts this bus with the app and stops it after.

        ``faststream run module:app`` then serves the bus' agents, and ``faststream docs gen``
        describes their channels (AsyncAPI). Made once, on first use.

        Raises:
            ConfigurationError: The backend is not built on a FastStream broker (memory).
        """
        if self._app is None:
            self._app = self.backend.make_app(self)
        return self._app

    # -- agents ----------------------------------------------------------------------------

    def agent(self, agent_id: str, *, content_type: str | None = None) -> Agent:
        """The agent ``agent_id`` of this bus, made on first use.

        Agents made before the bus starts are started with it; one made while the bus runs
        starts with ``await agent.start()``.

        Args:
            agent_id: The agent's id.
            content_type: If given, set the agent's `Agent.content_type`: the codec of the
                messages it sends (its handlers' replies included).

        Raises:
            ConfigurationError: No codec is registered for ``content_type``.
        """
        agent = self._agents.get(agent_id)
        if agent is None:
            agent = self._agents[agent_id] = Agent(self, agent_id)
        if content_type is not None:
            agent.content_type = content_type
        return agent

    @property
    def agents(self) -> Mapping[str, Agent]:
        """The agents of this bus, by id (a read-only live view: no copy per call)."""
        return MappingProxyType(self._agents)

    async def remove_agent(self, agent_id: str) -> None:
        """Stop an agent and forget it. Its durable inbox keeps its messages."""
        agent = self._agents.pop(agent_id, None)
        if agent is None:
            raise KeyError(f"no agent {agent_id!r} on this bus")
        await agent.stop()

    # -- scatter-gather --------------------------------------------------------------------

    async def gather(
        self,
        msg: ACLMessage,
        *,
        receivers: Iterable[str] | None = None,
        group: str | None = None,
        count: int | None = None,
        timeout: float | None = None,
    ) -> Gathered:
        """Scatter-gather: ask several agents at once, collect their replies.

        The request goes to each receiver's request subject (a copy per receiver, one
        conversation); the call returns when ``count`` replies are in, or at the deadline,
        whichever comes first, with what came.

        Args:
            msg: The request; ``receiver_id`` is set per receiver.
            receivers: The agents to ask.
            group: Ask the current members of this group instead (see `group_members`).
            count: Return after this many replies; None: wait for every receiver.
            timeout: Seconds until the deadline (default ``settings.request_timeout``).

        Raises:
            ConfigurationError: Neither or both of ``receivers`` and ``group``; ``count`` < 1.
        """
        return await gather(
            self, msg, receivers=receivers, group=group, count=count, timeout=timeout
        )

    # -- streaming --------------------------------------------------------------------------

    def request_stream(
        self, msg: ACLMessage, *, timeout: float | None = None, window: int | None = None
    ) -> ReplyStream:
        """Send a request whose handler streams its reply; iterate over the parts as they come.

        Leaving the loop early (``break``, an exception, cancellation) cancels the stream, and
        the producer's generator is closed. It is also an async context manager that closes
        the stream on exit. See `aclbus.streaming`.
        """
        from aclbus.streaming import request_stream  # on first use, as `aclbus` loads it

        return request_stream(self, msg, timeout=timeout, window=window)

    async def send_stream(
        self,
        msg: ACLMessage,
        items: AsyncIterable[Any] | Iterable[Any],
        *,
        window: int | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Open a stream to ``msg.receiver_id`` and send ``items`` through it, with back-pressure.

        The receiver handles it with `Agent.on_stream`. See `aclbus.streaming`.
        """
        from aclbus.streaming import send_stream

        return await send_stream(self, msg, items, window=window, timeout=timeout)

    # -- shared state and directory ------------------------------------------------------

    def shared_map(self, name: str, *, model: type[BaseModel] | None = None) -> SharedMap[Any]:
        """A KV-backed map that every agent on the broker shares, by name.

        Args:
            name: The map's name (an id): buckets are per name.
            model: A pydantic model the values are validated against on read and write.
        """
        from aclbus.shared import SharedMap

        return SharedMap(self, name, model=model)

    @property
    def directory(self) -> Directory:
        """The directory of agents' descriptions, with presence (made on first use)."""
        if self._directory is None:
            from aclbus.directory import Directory

            self._directory = Directory(self)
            self.at_stop(self._directory.close)  # a clean stop deregisters at once
        return self._directory

    # -- introspection ---------------------------------------------------------------------

    async def describe(self) -> dict[str, Any]:
        """What ``aclbus doctor`` shows: settings (secrets masked), plugins, backend facts.

        ``consumers`` (on a started bus of a persistent backend) has, per stream, the
        consumers ``used``, the ``max`` allowed, how many are ``free``, what one more agent
        takes (``per_agent``) and so how many more ``agents`` fit; ``agents_headroom`` is the
        least of those: how many more agents of the namespace can start.
        """
        return {
            "settings": self.settings.masked(),
            "backend": self.backend.name,
            "capabilities": self.backend.capabilities.names(),
            "plugins": [p.name for p in self.plugins.info()],
            "server": await self.backend.describe() if self._started else {},
            "consumers": await self._consumer_headroom() if self._started else {},
            "stats": self.stats.as_dict(),
        }

    async def _consumer_headroom(self) -> dict[str, Any]:
        if not self.backend.capabilities.persistent:
            return {}
        per_agent = consumers_per_agent(self.settings)
        streams: dict[str, dict[str, Any]] = {}
        headroom: int | None = None
        for traffic in provisioned_traffic(self.settings):
            name = self.subjects.stream(traffic)
            try:
                usage = await self.backend.stream_usage(name)
            except NotImplementedError:  # a backend that cannot tell: nothing to show
                return {}
            cost = per_agent[traffic]
            agents = usage.free // cost if cost and usage.free is not None else None
            streams[name] = {
                "used": usage.consumers,
                "max": usage.max_consumers,
                "free": usage.free,
                "per_agent": cost,
                "agents": agents,
            }
            if agents is not None:
                headroom = agents if headroom is None else min(headroom, agents)
        return {
            "streams": streams,
            "agents_headroom": headroom,
            "setting": "ACLBUS_STREAMS__MAX_CONSUMERS",
        }
