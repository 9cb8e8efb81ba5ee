"""`BusCore`: one bus' settings, plugins, backend, pipelines and lifecycle, and its sending.

This is the bus as the layers above it see it: agents, batches, streams, the directory and
shared maps are built on a `BusCore`, and `aclbus.Bus` (the class users make) adds them to
it. Outbound, every send-like method builds an `aclbus.middleware.Outgoing` and hands it to
the `PublishPipeline`; inbound, agents subscribe with the `ConsumePipeline`'s handlers.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Protocol, Self

from aclbus.acl import ACLMessage
from aclbus.backend import (
    Backend,
    DeliveryMode,
    KeyValue,
    PublishAck,
    Received,
    Subscription,
    SubscriptionSpec,
)
from aclbus.config_file import check_config_file
from aclbus.dlq import DeadLetters
from aclbus.errors import (
    BackendClosed,
    CapabilityError,
    ConfigurationError,
    UnknownBackend,
)
from aclbus.groups import GroupMembership
from aclbus.middleware import Middleware, Outgoing
from aclbus.pipeline import ConsumePipeline, PublishPipeline
from aclbus.plugin.manager import PluginManager
from aclbus.provisioning import provisioned_traffic, stream_spec
from aclbus.redaction import redact
from aclbus.settings import Settings
from aclbus.stats import BusStats
from aclbus.subjects import Subjects, validate_id, validate_topic

__all__ = ["MAX_DELIVERIES_ADVISORIES", "BusCore", "Member"]

log = logging.getLogger("aclbus")

MAX_DELIVERIES_ADVISORIES = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.*.*"
"""JetStream's advisories for messages delivered ``max_deliver`` times without an ack."""


class Member(Protocol):
    """What the bus needs of one of its agents: started and stopped with it, and its codec."""

    @property
    def id(self) -> str:
        """The agent's id."""
        ...

    @property
    def content_type(self) -> str | None:
        """The codec of what it sends; None: the bus' default."""
        ...

    async def start(self) -> None:
        """Subscribe (the bus is started)."""

    async def stop(self) -> None:
        """Unsubscribe."""


class BusCore:
    """A connection to one backend, with its plugins, pipelines and the sending methods.

    Make an `aclbus.Bus`, which is a `BusCore` with agents and the patterns on top; this
    class is what those are built on.

    Args:
        settings: The settings; None reads the environment, ``.env`` and ``aclbus.toml``.
        plugins: Extra plugin objects (with hookimpls), loaded after the installed ones.
        backend: A backend to use instead of making the one ``settings.backend`` names.
        entry_points: Whether to load plugins from the ``aclbus`` entry points.
        members: The bus' agents by id, live: started and stopped with the bus, their
            codecs applied to what they send.

    Raises:
        UnknownBackend: ``settings.backend`` names no registered backend.
        CapabilityError: A plugin needs a capability the backend lacks.
        PluginError: A plugin failed to load.
        TypeError: ``backend`` is not a `Backend` (a name goes in the settings).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        plugins: Sequence[object] = (),
        backend: Backend | None = None,
        entry_points: bool = True,
        members: Mapping[str, Member] | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        self.subjects = Subjects(self.settings.subject_prefix)
        self.extra_plugins = tuple(plugins)
        """The plugin objects given to the constructor (a `sibling` gets them too)."""
        self._entry_points = entry_points
        self.plugins = PluginManager(self.settings, plugins, entry_points=entry_points)
        self.codecs = self.plugins.codecs()
        if backend is not None and not isinstance(backend, Backend):
            hint = f": Settings(backend={backend!r}) chooses one by name" * isinstance(backend, str)
            raise TypeError(f"backend= takes a Backend, not {type(backend).__name__}{hint}")
        self.backend = backend if backend is not None else self._make_backend()
        # TLS and credentials from the plugins (aclbus-tls, aclbus-auth), before any connect:
        # a file that cannot work fails here, when the bus is made.
        self.backend.configure_connection(self.plugins.connection_options(self.settings))
        # Every adapter's and plugin's settings class is known now: a table or key of
        # aclbus.toml that none of them reads is a typo.
        check_config_file(type(self.settings), self.plugins.installed)
        self._check_capabilities()
        self.stats = BusStats()
        self.dead_letters = DeadLetters(self.backend, self.subjects, self.stats)
        """The dead-letter queue: list, inspect, replay, purge."""
        self.middlewares: list[Middleware] = []
        self._members: Mapping[str, Member] = members if members is not None else {}
        self._at_stop: list[Callable[[], object]] = []
        self._groups = GroupMembership(self.backend, self.subjects, self.settings)
        self._pending: set[asyncio.Future[ACLMessage]] = set()
        self._advisories: Subscription | None = None
        self._started = False
        self.publish_pipeline = PublishPipeline(
            settings=self.settings,
            subjects=self.subjects,
            codecs=self.codecs,
            backend=self.backend,
            stats=self.stats,
            senders=self._members,
        )
        """The way out: middleware, encoding, the backend (see `aclbus.pipeline`)."""
        self.consume_pipeline = ConsumePipeline(
            settings=self.settings,
            subjects=self.subjects,
            codecs=self.codecs,
            backend=self.backend,
            stats=self.stats,
            dead_letters=self.dead_letters,
            publisher=self.publish_pipeline,
            send=self.send,
        )
        """The way in: decoding, routing, middleware, the handler, settling."""

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

    def sibling(self, settings: Settings | None = None) -> Self:
        """A new bus on the same broker with a connection of its own (not started).

        Agents on the sibling behave as if they ran in another process: two instances of one
        agent id, one per bus, share that agent's inbox (each message to one of them).

        Args:
            settings: The sibling's settings; None: this bus' settings.
        """
        return type(self)(
            settings if settings is not None else self.settings,
            plugins=self.extra_plugins,
            backend=self.backend.sibling(),
            entry_points=self._entry_points,
        )

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """True between `start` and `stop`."""
        return self._started

    async def start(self) -> None:
        """Connect, provision the streams, build the middleware chains, start the agents."""
        if self._started:
            return
        # A policy held by the backend itself (memory): in place before the first operation.
        permissions = self.plugins.connection_permissions(self.settings)
        self.backend.enforce(permissions)
        await self.backend.connect()
        try:
            if self.backend.capabilities.persistent:
                for traffic in provisioned_traffic(self.settings):
                    await self.backend.provision(stream_spec(self.settings, self.subjects, traffic))
            self.middlewares = [
                factory(self) for factory in self.plugins.middlewares(self.settings)
            ]
            self.publish_pipeline.compose(self.middlewares)
            self.consume_pipeline.compose(self.middlewares)
            await self._lifecycle("aclbus_bus_provisioned")
            self._started = True
            if permissions is not None and not permissions.subscribe.permits_filter(
                MAX_DELIVERIES_ADVISORIES
            ):
                # An agent's user may not read others' messages, which the advisory path
                # does: a bus whose user may (an admin's) dead-letters exhausted messages.
                log.info(
                    "user %r may not hear MAX_DELIVERIES advisories: a bus whose user may "
                    "(an admin's) dead-letters exhausted messages",
                    permissions.principal,
                )
            elif self.backend.capabilities.persistent and self.backend.capabilities.max_deliver:
                self._advisories = await self.backend.subscribe(
                    SubscriptionSpec(
                        subject=MAX_DELIVERIES_ADVISORIES,
                        mode=DeliveryMode.AT_MOST_ONCE,
                        # one bus of the deployment handles each advisory
                        queue=self.subjects.durable("dlq", "advisories"),
                    ),
                    self._on_advisory,
                )
            for member in list(self._members.values()):
                await member.start()
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
            for close in self._at_stop:
                result = close()
                if inspect.isawaitable(result):
                    await result
        finally:
            for future in list(self._pending):
                future.cancel()
            for member in list(self._members.values()):
                await member.stop()
            if self._advisories is not None:
                await self._advisories.unsubscribe()
                self._advisories = None
            self._started = False
            self._groups.forget()
            await self.backend.close()

    def at_stop(self, close: Callable[[], object]) -> None:
        """Call ``close()`` (and await what it returns) at each `stop`, before the agents stop.

        For what is built on the bus and must let go first: the directory deregisters its
        agents at once on a clean stop.
        """
        self._at_stop.append(close)

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
        self.check_started()
        threshold = self.settings.priority_threshold
        inbox = (
            self.subjects.priority_inbox
            if threshold is not None and msg.priority >= threshold
            else self.subjects.inbox
        )
        if len(receivers) == 1:
            out = Outgoing(msg, inbox(receivers[0]), mode, content_type=content_type)
            return [await self.publish_pipeline.publish(out)]
        # One stream holds every inbox: each copy needs its own dedup key, or the second
        # receiver's copy would be dropped as a duplicate of the first.
        return [
            await self.publish_pipeline.publish(
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
        self.check_started()
        out = Outgoing(
            msg,
            self.subjects.broadcast,
            mode or self.settings.broadcast_mode,
            content_type=content_type,
        )
        return await self.publish_pipeline.publish(out)

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
        async with self.publish_pipeline.request_slots:
            return await self.publish_pipeline.request(out)

    def _request_out(
        self, msg: ACLMessage, timeout: float | None, content_type: str | None = None
    ) -> Outgoing:
        if msg.receiver_id is None:
            raise ConfigurationError("request() needs a message with a receiver_id")
        self.check_started()
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
        self.check_started()
        if topic is not None and topic != msg.topic:
            msg = msg.model_copy(update={"topic": validate_topic(topic)})
        if msg.topic is None:
            raise ConfigurationError("publish() needs a topic: publish(msg, topic='a.b')")
        out = Outgoing(msg, self.subjects.topic(msg.topic), mode, content_type=content_type)
        return await self.publish_pipeline.publish(out)

    async def multicast(
        self, group: str, msg: ACLMessage, *, content_type: str | None = None
    ) -> PublishAck:
        """Send ``msg`` to every current member of ``group``, once each (see `aclbus.Agent.join`).

        An agent with several instances gets it once, at one of them. Members that join
        later do not get it; members that left do not either. ``content_type`` names the
        body's codec, as for `send`.

        Raises:
            InvalidIdentifier: ``group`` is not a valid id.
        """
        self.check_started()
        return await self.publish_pipeline.publish(
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
            BackendClosed: The bus is not started.
        """
        validate_id(group, "group")
        self.check_started()
        return await self._groups.members(group)

    async def groups_bucket(self) -> KeyValue:
        """The KV bucket of group membership (keys ``{group}.{agent}``), made on first use.

        `aclbus.Agent.join` and `aclbus.Agent.leave` write it, `group_members` reads it.

        Raises:
            CapabilityError: The backend has no key-value store.
            BackendClosed: The bus is not started.
        """
        self.check_started()
        return await self._groups.bucket()

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
        await self.publish_pipeline.request_slots.acquire()
        try:
            task = asyncio.create_task(
                self._request_once(out), name=f"aclbus-request:{msg.message_id}"
            )
        except BaseException:
            self.publish_pipeline.request_slots.release()
            raise
        self._pending.add(task)

        def done(finished: asyncio.Future[ACLMessage]) -> None:
            self._pending.discard(finished)
            self.publish_pipeline.request_slots.release()

        task.add_done_callback(done)
        if callback is not None:
            task.add_done_callback(callback)
        return task

    async def _request_once(self, out: Outgoing) -> ACLMessage:
        return await self.publish_pipeline.request(out)

    def check_started(self) -> None:
        """Raise `BackendClosed` unless the bus is started.

        Raises:
            BackendClosed: It is not.
        """
        if not self._started:
            raise BackendClosed(
                "the bus is not started: use `async with bus:` or `await bus.start()`"
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

        Retry plugins call this when a message's attempts are spent. The dead letter is
        stored first; if it cannot be, the message is handed back for a later redelivery
        instead, so nothing is lost (`aclbus.pipeline.ConsumePipeline.give_up`).

        Args:
            received: The delivery.
            agent: The agent it was for.
            reason: Why (see `aclbus.dlq.Reason`).
            error: The exception that made it fail, if any.
            handler: The failing handler's name, if any.
        """
        await self.consume_pipeline.give_up(
            received, agent=agent, reason=reason, error=error, handler=handler
        )
