"""The Bus: settings, plugins and a backend wired together, with the messaging patterns on top.

Outbound: user call → publish/request middleware chain → encode → backend. Inbound: backend →
decode → consume middleware chain → the agent's handler → ack. Both chains are composed once
when the bus starts; with no plugin middleware they are direct calls.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import (
    AsyncIterable,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import asdict, dataclass, field
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ValidationError

from aclbus import wire
from aclbus.acl import ACLMessage, Performative
from aclbus.agent import Agent, call_handler, consumers_per_agent
from aclbus.backend import (
    Backend,
    DeliveryMode,
    KeyValue,
    KVSpec,
    PublishAck,
    Received,
    StreamSpec,
    Subscription,
    SubscriptionSpec,
)
from aclbus.config_file import check_config_file
from aclbus.dlq import DeadLetters, Reason, redact
from aclbus.errors import (
    ACLDecodeError,
    BackendClosed,
    CapabilityError,
    ConfigurationError,
    HopLimitExceeded,
    InvalidIdentifier,
    InvalidPayload,
    MalformedHeaders,
    MessageTooLarge,
    UnknownBackend,
)
from aclbus.middleware import (
    ConsumeNext,
    Delivery,
    Middleware,
    Outgoing,
    PublishNext,
    RequestNext,
    compose,
)
from aclbus.plugin.manager import PluginManager
from aclbus.settings import Settings
from aclbus.subjects import Subjects, TrafficClass, validate_id, validate_topic

if TYPE_CHECKING:
    from aclbus.directory import Directory
    from aclbus.shared import SharedMap
    from aclbus.streaming import ReplyStream

__all__ = ["Bus", "BusStats", "Gathered"]

log = logging.getLogger("aclbus")

MAX_DELIVERIES_ADVISORIES = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.*.*"
"""JetStream's advisories for messages delivered ``max_deliver`` times without an ack."""


@dataclass(slots=True)
class BusStats:
    """Counters of one bus since it was made.

    Attributes:
        published: Messages published (each receiver of a send counts once).
        requests: Requests sent.
        delivered: Deliveries received by this bus' agents.
        handled: Deliveries a handler finished without raising.
        failed: Deliveries whose handler (or middleware) raised.
        unhandled: Deliveries no handler matched.
        decode_errors: Deliveries that were not valid ACL messages.
        expired: Deliveries dropped because their TTL had run out.
        dead_lettered: Messages this bus put in the dead-letter queue.
    """

    published: int = 0
    requests: int = 0
    delivered: int = 0
    handled: int = 0
    failed: int = 0
    unhandled: int = 0
    decode_errors: int = 0
    expired: int = 0
    dead_lettered: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return asdict(self)


@dataclass(slots=True)
class Gathered:
    """What `Bus.gather` collected.

    Attributes:
        asked: The agents asked, in order.
        replies: The replies, by the agent that sent them, in arrival order.
        errors: The agents whose request failed (`NoResponders`, `RequestTimeout`, ...); a
            ``failure`` reply is a reply.
    """

    asked: tuple[str, ...] = ()
    replies: dict[str, ACLMessage] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)

    @property
    def missing(self) -> tuple[str, ...]:
        """The agents asked that neither replied nor failed by the deadline."""
        return tuple(a for a in self.asked if a not in self.replies and a not in self.errors)


class Bus:
    """A connection to one backend, with agents, plugins and the messaging patterns.

    Args:
        settings: The settings; None reads the environment, ``.env`` and ``aclbus.toml``.
        plugins: Extra plugin objects (with hookimpls), loaded after the installed ones.
        backend: A backend to use instead of making the one ``settings.backend`` names.
        entry_points: Whether to load plugins from the ``aclbus`` entry points.

    Raises:
        UnknownBackend: ``settings.backend`` names no registered backend.
        CapabilityError: A plugin needs a capability the backend lacks.
        PluginError: A plugin failed to load.

    Example::

        async with Bus(Settings(backend="memory")) as bus:
            worker = bus.agent("worker")

            @worker.on(Performative.REQUEST)
            async def handle(msg: ACLMessage) -> ACLMessage:
                return msg.reply(Performative.INFORM, payload={"ok": True})

            await worker.start()
            reply = await bus.request(ACLMessage(performative="request", sender_id="cli",
                                                 receiver_id="worker"))
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        plugins: Sequence[object] = (),
        backend: Backend | None = None,
        entry_points: bool = True,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        self.subjects = Subjects(self.settings.subject_prefix)
        self._explicit_plugins = tuple(plugins)
        self._entry_points = entry_points
        self.plugins = PluginManager(self.settings, plugins, entry_points=entry_points)
        self.codecs = self.plugins.codecs()
        self.backend = backend if backend is not None else self._make_backend()
        # Every adapter's and plugin's settings class is known now: a table or key of
        # aclbus.toml that none of them reads is a typo.
        check_config_file(type(self.settings), self.plugins.installed)
        self._check_capabilities()
        self.stats = BusStats()
        self.dead_letters = DeadLetters(self)
        """The dead-letter queue: list, inspect, replay, purge."""
        self.middlewares: list[Middleware] = []
        self._agents: dict[str, Agent] = {}
        self._app: Any = None
        self._directory: Directory | None = None
        self._groups_kv: KeyValue | None = None
        self._pending: set[asyncio.Future[ACLMessage]] = set()
        self._advisories: Subscription | None = None
        self._started = False
        self._request_slots = asyncio.Semaphore(self.settings.max_requests_in_flight)
        self._publish_chain: PublishNext = self._publish_terminal
        self._request_chain: RequestNext = self._request_terminal
        self._consume_chain: ConsumeNext = self._dispatch

    def _make_backend(self) -> Backend:
        factories = self.plugins.backends()
        factory = factories.get(self.settings.backend)
        if factory is None:
            raise UnknownBackend(self.settings.backend, list(factories))
        return factory(self.settings)

    def _check_capabilities(self) -> None:
        for plugin, required in self.plugins.required_capabilities(self.settings):
            missing = self.backend.capabilities.missing(required)
            if missing:
                raise CapabilityError(f"plugin {plugin!r}", self.backend.name, missing)

    def sibling(self, settings: Settings | None = None) -> Bus:
        """A new bus on the same broker with a connection of its own (not started).

        Agents on the sibling behave as if they ran in another process: two instances of one
        agent id, one per bus, share that agent's inbox (each message to one of them).

        Args:
            settings: The sibling's settings; None: this bus' settings.
        """
        return Bus(
            settings if settings is not None else self.settings,
            plugins=self._explicit_plugins,
            backend=self.backend.sibling(),
            entry_points=self._entry_points,
        )

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

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """True between `start` and `stop`."""
        return self._started

    async def start(self) -> None:
        """Connect, provision the streams, build the middleware chains, start the agents."""
        if self._started:
            return
        await self.backend.connect()
        try:
            if self.backend.capabilities.persistent:
                for traffic in self._provisioned():
                    await self.backend.provision(self._stream_spec(traffic))
            self.middlewares = [
                factory(self) for factory in self.plugins.middlewares(self.settings)
            ]
            self._publish_chain = compose(self.middlewares, "publish", self._publish_terminal)
            self._request_chain = compose(self.middlewares, "request", self._request_terminal)
            self._consume_chain = compose(self.middlewares, "consume", self._dispatch)
            await self._lifecycle("aclbus_bus_provisioned")
            self._started = True
            if self.backend.capabilities.persistent and self.backend.capabilities.max_deliver:
                self._advisories = await self.backend.subscribe(
                    SubscriptionSpec(
                        subject=MAX_DELIVERIES_ADVISORIES,
                        mode=DeliveryMode.AT_MOST_ONCE,
                        # one bus of the deployment handles each advisory
                        queue=self.subjects.durable("dlq", "advisories"),
                    ),
                    self._on_advisory,
                )
            for agent in list(self._agents.values()):
                await agent.start()
            await self._lifecycle("aclbus_bus_started")
        except BaseException:
            self._started = False
            await self.backend.close()
            raise

    async def stop(self) -> None:
        """Stop the agents, then close the backend. Idempotent."""
        if not self._started:
            return
        try:
            await self._lifecycle("aclbus_bus_stopping")
            if self._directory is not None:
                await self._directory.close()  # a clean stop deregisters at once
        finally:
            for future in list(self._pending):
                future.cancel()
            for agent in list(self._agents.values()):
                await agent.stop()
            if self._advisories is not None:
                await self._advisories.unsubscribe()
                self._advisories = None
            self._started = False
            self._groups_kv = None
            await self.backend.close()

    async def _on_advisory(self, received: Received) -> None:
        """A message exhausted its deliveries (the handler never finished): dead-letter it."""
        try:
            await self.dead_letters.handle_advisory(received.body)
        except Exception as exc:  # the message stays in its stream; nothing more can be done
            log.error("could not dead-letter an exhausted message: %s", redact(str(exc)))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _lifecycle(self, hook: str) -> None:
        for result in self.plugins.call_lifecycle(hook, bus=self):
            if inspect.isawaitable(result):
                await result

    def _provisioned(self) -> list[TrafficClass]:
        """The traffic classes that get a stream on a persistent backend."""
        return [
            traffic
            for traffic in TrafficClass
            # A stream over at_most_once broadcasts would store them all the same.
            if not (
                traffic is TrafficClass.BROADCAST
                and self.settings.broadcast_mode is DeliveryMode.AT_MOST_ONCE
            )
        ]

    def _stream_spec(self, traffic: TrafficClass) -> StreamSpec:
        limits = self.settings.streams
        return StreamSpec(
            name=self.subjects.stream(traffic),
            subjects=self.subjects.stream_subjects(traffic),
            max_age=limits.max_age,
            max_bytes=limits.max_bytes,
            max_msgs=limits.max_msgs,
            max_msg_size=self.settings.max_message_bytes,
            duplicate_window=limits.duplicate_window,
            storage="memory" if limits.storage == "memory" else "file",
            replicas=limits.replicas,
            discard="old" if limits.discard == "old" else "new",
            max_consumers=limits.max_consumers,
            # An agent's priority lane makes its consumer when its first message is stored.
            announce=self.subjects.priority_lanes if traffic is TrafficClass.INBOX else None,
        )

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

    # -- sending ---------------------------------------------------------------------------

    async def send(
        self,
        msg: ACLMessage,
        *,
        mode: DeliveryMode = DeliveryMode.AT_LEAST_ONCE,
        content_type: str | None = None,
    ) -> list[PublishAck]:
        """Send ``msg`` to the inbox of each of its receivers.

        ``content_type`` names the codec of the body (every send-like method takes it); by
        default the sending agent's `Agent.content_type`, else the bus' default (JSON).

        Returns:
            The broker's ack for each receiver, in ``msg.all_receivers`` order.

        Raises:
            ConfigurationError: The message names no receiver.
            MessageTooLarge: The encoded message is over ``max_message_bytes``.
            EncodeError: No codec is registered for ``content_type``, or it cannot encode the
                payload.
        """
        receivers = msg.all_receivers
        if not receivers:
            raise ConfigurationError("send() needs a message with receiver_id or receivers")
        self._check_started()
        threshold = self.settings.priority_threshold
        inbox = (
            self.subjects.priority_inbox
            if threshold is not None and msg.priority >= threshold
            else self.subjects.inbox
        )
        if len(receivers) == 1:
            out = Outgoing(msg, inbox(receivers[0]), mode, content_type=content_type)
            return [await self._publish_chain(out)]
        # One stream holds every inbox: each copy needs its own dedup key, or the second
        # receiver's copy would be dropped as a duplicate of the first.
        return [
            await self._publish_chain(
                Outgoing(
                    msg, inbox(r), mode, msg_id=f"{msg.message_id}:{r}", content_type=content_type
                )
            )
            for r in receivers
        ]

    async def broadcast(
        self,
        msg: ACLMessage,
        *,
        mode: DeliveryMode | None = None,
        content_type: str | None = None,
    ) -> PublishAck:
        """Send ``msg`` to every agent (in ``settings.broadcast_mode`` unless ``mode`` is set)."""
        self._check_started()
        out = Outgoing(
            msg,
            self.subjects.broadcast,
            mode or self.settings.broadcast_mode,
            content_type=content_type,
        )
        return await self._publish_chain(out)

    async def request(
        self,
        msg: ACLMessage,
        *,
        timeout: float | None = None,
        content_type: str | None = None,
    ) -> ACLMessage:
        """Send a request to ``msg.receiver_id`` and wait for its reply.

        At most ``settings.max_requests_in_flight`` requests wait at once; more wait for a
        slot (back-pressure instead of unbounded memory).

        Raises:
            NoResponders: No agent serves ``msg.receiver_id`` (raised at once).
            RequestTimeout: No reply within ``timeout`` (default ``settings.request_timeout``).
            ACLDecodeError: The reply is not a valid ACL message.
        """
        out = self._request_out(msg, timeout, content_type)
        async with self._request_slots:
            return await self._request_chain(out)

    def _request_out(
        self, msg: ACLMessage, timeout: float | None, content_type: str | None = None
    ) -> Outgoing:
        if msg.receiver_id is None:
            raise ConfigurationError("request() needs a message with a receiver_id")
        self._check_started()
        return Outgoing(
            msg,
            self.subjects.rpc(msg.receiver_id),
            DeliveryMode.AT_MOST_ONCE,
            timeout=timeout if timeout is not None else self.settings.request_timeout,
            content_type=content_type,
        )

    async def publish(
        self,
        msg: ACLMessage,
        *,
        topic: str | None = None,
        mode: DeliveryMode = DeliveryMode.AT_LEAST_ONCE,
        content_type: str | None = None,
    ) -> PublishAck:
        """Publish ``msg`` on a topic: every agent subscribed to a matching pattern gets it.

        Args:
            msg: The message; its ``topic`` is the topic unless ``topic`` is given.
            topic: The dotted topic (``orders.eu.created``); it is written into the message.
            mode: ``at_least_once`` stores it in the topic stream (subscribers with a durable
                subscription get it after a restart); ``at_most_once`` only reaches the
                subscribers connected now.
            content_type: The codec of the body, as for `send`.

        Raises:
            ConfigurationError: No topic given and the message has none.
            InvalidIdentifier: The topic is not a dotted id (wildcards are for subscribers).
        """
        self._check_started()
        if topic is not None and topic != msg.topic:
            msg = msg.model_copy(update={"topic": validate_topic(topic)})
        if msg.topic is None:
            raise ConfigurationError("publish() needs a topic: publish(msg, topic='a.b')")
        out = Outgoing(msg, self.subjects.topic(msg.topic), mode, content_type=content_type)
        return await self._publish_chain(out)

    async def multicast(
        self, group: str, msg: ACLMessage, *, content_type: str | None = None
    ) -> PublishAck:
        """Send ``msg`` to every current member of ``group``, once each (see `Agent.join`).

        An agent with several instances gets it once, at one of them. Members that join
        later do not get it; members that left do not either. ``content_type`` names the
        body's codec, as for `send`.

        Raises:
            InvalidIdentifier: ``group`` is not a valid id.
        """
        self._check_started()
        return await self._publish_chain(
            Outgoing(
                msg,
                self.subjects.group(group),
                DeliveryMode.AT_LEAST_ONCE,
                content_type=content_type,
            )
        )

    async def group_members(self, group: str) -> list[str]:
        """The ids of the agents that are members of ``group`` now, sorted.

        Raises:
            CapabilityError: The backend has no key-value store.
        """
        validate_id(group, "group")
        kv = await self._groups_bucket()
        prefix = f"{group}."
        members = []
        for key in await kv.keys():
            if key.startswith(prefix):
                try:
                    members.append(validate_id(key[len(prefix) :]))
                except InvalidIdentifier:  # written by some other client: not an agent of ours
                    log.warning("group %s: ignoring member key %r (not an agent id)", group, key)
        return sorted(members)

    async def _groups_bucket(self) -> KeyValue:
        """The KV bucket of group membership (keys ``{group}.{agent}``), made on first use."""
        self._check_started()
        if not self.backend.capabilities.kv:
            raise CapabilityError("groups", self.backend.name, ["kv"])
        if self._groups_kv is None:
            bucket = self.subjects.bucket("groups")
            await self.backend.provision(
                KVSpec(
                    bucket=bucket,
                    replicas=self.settings.streams.replicas,
                    storage=self._kv_storage(),
                )
            )
            self._groups_kv = await self.backend.kv(bucket)
        return self._groups_kv

    def _kv_storage(self) -> Literal["file", "memory"]:
        return "memory" if self.settings.streams.storage == "memory" else "file"

    async def request_future(
        self,
        msg: ACLMessage,
        *,
        timeout: float | None = None,
        callback: Callable[[asyncio.Future[ACLMessage]], object] | None = None,
        content_type: str | None = None,
    ) -> asyncio.Future[ACLMessage]:
        """Send a request and return at once a future of its reply.

        This waits only for a slot among ``settings.max_requests_in_flight`` (back-pressure:
        a caller that fires requests faster than they are answered is slowed down instead
        of piling up tasks), then sends the request in the background.

        Args:
            msg: The request, as for `request`.
            timeout: Seconds to wait for the reply (default ``settings.request_timeout``).
            callback: Called with the done future (its result or its exception: `NoResponders`,
                `RequestTimeout`, ...), as ``future.add_done_callback`` does.
            content_type: The codec of the request's body, as for `send`.

        Returns:
            A future that resolves to the reply, or to the error `request` would raise.
            Stopping the bus cancels the futures still pending.
        """
        out = self._request_out(msg, timeout, content_type)
        await self._request_slots.acquire()
        try:
            task = asyncio.create_task(
                self._request_once(out), name=f"aclbus-request:{msg.message_id}"
            )
        except BaseException:
            self._request_slots.release()
            raise
        self._pending.add(task)

        def done(finished: asyncio.Future[ACLMessage]) -> None:
            self._pending.discard(finished)
            self._request_slots.release()

        task.add_done_callback(done)
        if callback is not None:
            task.add_done_callback(callback)
        return task

    async def _request_once(self, out: Outgoing) -> ACLMessage:
        return await self._request_chain(out)

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
        if (receivers is None) == (group is None):
            raise ConfigurationError("gather() needs receivers=[...] or group=..., not both")
        if count is not None and count < 1:
            raise ConfigurationError(f"gather(count=...) must be at least 1, got {count}")
        self._check_started()
        targets = (
            await self.group_members(group)
            if group is not None
            else [validate_id(r, "receiver") for r in dict.fromkeys(receivers or ())]
        )
        wait = timeout if timeout is not None else self.settings.request_timeout
        result = Gathered(asked=tuple(targets))
        if not targets:
            return result
        conversation = msg.correlation_id or msg.message_id
        futures: dict[asyncio.Future[ACLMessage], str] = {}
        for target in targets:
            copy = msg.model_copy(
                update={
                    "receiver_id": target,
                    "receivers": (),
                    "correlation_id": conversation,
                    "message_id": f"{msg.message_id[:100]}-{len(futures)}",
                }
            )
            futures[await self.request_future(copy, timeout=wait)] = target
        needed = len(targets) if count is None else min(count, len(targets))
        pending = set(futures)
        deadline = asyncio.get_running_loop().time() + wait
        try:
            while pending and len(result.replies) < needed:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                done, pending = await asyncio.wait(
                    pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                for future in done:
                    target = futures[future]
                    error = future.exception()
                    if error is not None:
                        result.errors[target] = error
                    elif len(result.replies) < needed:
                        result.replies[target] = future.result()
                    else:
                        pending.add(future)  # one too many at once: counted as missing
        finally:
            for future in pending:
                future.cancel()
        return result

    def _check_started(self) -> None:
        if not self._started:
            raise BackendClosed(
                "the bus is not started: use `async with bus:` or `await bus.start()`"
            )

    def _encode(self, out: Outgoing) -> tuple[dict[str, str], bytes]:
        limit = self.settings.max_message_bytes
        content_type = out.content_type
        if content_type is None:
            sender = self._agents.get(out.message.sender_id)
            content_type = sender.content_type if sender is not None else None
        if not out.headers:
            return wire.encode(out.message, self.codecs, content_type=content_type, max_bytes=limit)
        # Middleware headers travel too: the receiver counts them, so the limit must as well.
        headers, body = wire.encode(out.message, self.codecs, content_type=content_type)
        headers.update(out.headers)
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
        headers, body = self._encode(out)
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
        headers, body = self._encode(out)
        self.stats.requests += 1
        reply = await self.backend.request(
            out.subject, headers, body, timeout=out.timeout or self.settings.request_timeout
        )
        return wire.decode(reply.headers, reply.body, self.codecs)

    # -- receiving -------------------------------------------------------------------------

    def _delivery_handler(self, agent: Agent) -> Callable[[Received], Awaitable[None]]:
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
                await self._failed(delivery, exc)
                return
            if route is not None and route.batch is not None:
                await route.batch.add(delivery)  # its batch runs the chain (see aclbus.batches)
                return
            await self._consume(delivery)

        return on_delivery

    async def _consume(self, delivery: Delivery) -> None:
        """Run a routed delivery through the consume chain; a failure fails the delivery."""
        try:
            await self._consume_chain(delivery)
        except Exception as exc:
            await self._failed(delivery, exc)

    async def _failed(self, delivery: Delivery, exc: Exception) -> None:
        self.stats.failed += 1
        log.warning(
            "agent %s: handling message %s failed: %s: %s",
            delivery.agent,
            delivery.message.message_id,
            type(exc).__name__,
            redact(str(exc)),  # an exception's text may hold a credential
        )
        await self._fail(delivery, exc)

    @property
    def _has_consume_middleware(self) -> bool:
        """Whether any middleware wraps consuming (else the handler is called directly)."""
        return self._consume_chain != self._dispatch

    async def _dispatch(self, delivery: Delivery) -> None:
        """The innermost step of the consume chain: route to a handler, send its reply, ack."""
        route = delivery.route
        if route is None:
            self.stats.unhandled += 1
            await self._not_understood(delivery, "no handler for this message")
            await delivery.ack()
            return
        if route.payload is not None and not await self._typed(delivery):
            return
        if route.streams:
            from aclbus.streaming import serve

            await serve(self, route, delivery)
            self.stats.handled += 1
            if delivery.received.settled is None:
                await delivery.ack()
            return
        if route.batch is not None:
            result = await route.batch.arrive(delivery)
        else:
            result = await call_handler(route, delivery)
        await self._finish(delivery, result)

    async def _typed(self, delivery: Delivery) -> bool:
        """Give the message its route's payload model; False if the payload does not fit.

        A payload that does not fit is answered and dead-lettered here (see `_invalid_payload`).
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

    async def _finish(self, delivery: Delivery, result: ACLMessage | None) -> None:
        """After the handler: send its reply, count it, acknowledge what it left unsettled."""
        if result is not None:
            await self._send_result(result, delivery.received)
        self.stats.handled += 1
        if delivery.received.settled is None:
            await delivery.ack()

    async def _send_result(self, result: ACLMessage, received: Received) -> None:
        if not isinstance(result, ACLMessage):
            raise TypeError(f"a handler returned {type(result).__name__}, not an ACLMessage")
        if received.reply:
            await self._publish_chain(Outgoing(result, received.reply, DeliveryMode.AT_MOST_ONCE))
        elif result.all_receivers:
            await self.send(result)
        else:
            raise ConfigurationError("a handler's reply names no receiver and nobody awaits it")

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
                await self._send_result(reply, delivery.received)
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
                await self._publish_chain(
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
        lost. Retry plugins call this when a message's attempts are spent.

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

    async def _refuse(self, received: Received, agent_id: str, exc: ACLDecodeError) -> None:
        """A delivery that is not a valid message: dead-letter it, tell the sender if we can.

        A header block that breaks the block's rules is dead-lettered as ``malformed-headers``,
        anything else as ``malformed``; `_answer_refusal` says who is told.
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
        await self._answer_refusal(received, agent_id, exc)

    async def _not_understood(self, delivery: Delivery, reason: str) -> None:
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
        await self._send_result(reply, delivery.received)

    async def _answer_refusal(self, received: Received, agent_id: str, exc: ACLDecodeError) -> None:
        """Answer a delivery that could not be decoded with ``not-understood``, where it is safe.

        FIPA's answer to a message one cannot understand; its payload is
        ``{"reason", "field", "message_id"}``, and it quotes the message's id (``in_reply_to``,
        ``caused_by``) and conversation as far as the headers can be read. Never answered: a
        broadcast, group or topic message (one bad broadcast would make every agent answer
        its sender), nor a message that says it is a not-understood itself, whatever else is
        wrong with it (two agents that cannot read each other would answer each other
        forever). It goes to the request's reply subject if there is one, else to the inbox of
        ``acl-reply-to`` or ``ce-source`` if that is an id, the answer's receiver either way.
        A message whose header block is malformed is answered on its reply subject only, with
        no receiver: its headers may name an agent that did not send it (a second
        ``ce-source``), which must not be sent answers to messages it never sent.
        """
        if self.subjects.reaches_many(received.subject):
            return
        headers = _all_values(received.headers)
        if any(value.strip(" \t") == _NOT_UNDERSTOOD for value in headers.get("ce-type", ())):
            return
        receiver = None
        if not isinstance(exc, MalformedHeaders):  # else who sent it is what is not known
            receiver = _one_id(headers, "acl-reply-to") or _one_id(headers, "ce-source")
        if receiver is None and not received.reply:
            return
        msg_id = _one_id(headers, "ce-id")
        try:
            answer = ACLMessage(
                performative=Performative.NOT_UNDERSTOOD,
                sender_id=agent_id,
                receiver_id=receiver,
                correlation_id=_one_id(headers, "acl-correlation-id") or msg_id,
                in_reply_to=_one_id(headers, "acl-reply-with") or msg_id,
                protocol=_one_id(headers, "acl-protocol"),
                hops=1,
                caused_by=(msg_id,) if msg_id else (),
                payload={"reason": redact(str(exc)), "field": exc.field, "message_id": msg_id},
            )
            await self._send_result(answer, received)
        except Exception as error:
            log.warning(
                "agent %s: could not answer not-understood: %s", agent_id, redact(str(error))
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
        from aclbus.streaming import request_stream

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
        for traffic in self._provisioned():
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


_NOT_UNDERSTOOD = wire.CE_TYPE_PREFIX + Performative.NOT_UNDERSTOOD.value


def _all_values(headers: Mapping[str, str]) -> dict[str, list[str]]:
    """Every text value of each header, by lower-case name (names in any case are one)."""
    out: dict[str, list[str]] = {}
    for key, value in headers.items():
        if isinstance(key, str) and isinstance(value, str):
            out.setdefault(key.lower(), []).append(value)
    return out


def _one_id(headers: Mapping[str, list[str]], name: str) -> str | None:
    """The header's value if it was given once and is an id, else None (it cannot be read)."""
    values = headers.get(name, ())
    if len(values) != 1:
        return None
    try:
        return validate_id(values[0].strip(" \t"), name, remember=False)
    except InvalidIdentifier:
        return None
