"""The NATS JetStream backend.

FastStream's `NatsBroker` owns the connection (options, reconnects, drain on close) and gives
the bus its FastStream app and AsyncAPI document. The message path runs on that same nats-py
connection without FastStream's per-message machinery (dependency injection, exit stacks,
context variables), which costs about ten times nats-py's own work per message (DESIGN.md, "The
hot path"): deliveries go straight from nats-py's subscription to the bus' middleware chain,
and acks are single publishes to the delivery's ack subject.

`NatsBackend` is the `Backend` contract over the parts that do the work, each in a module of
its own: the connection (`aclbus_nats.connection`), publishing (`aclbus_nats.publishing`),
consuming (`aclbus_nats.consuming`, `aclbus_nats.subscription`), provisioning
(`aclbus_nats.provisioning`) and stored messages (`aclbus_nats.stored`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aclbus.backend import (
    Backend,
    Capabilities,
    ConnectionOptions,
    ConsumerState,
    DeliveryHandler,
    KeyValue,
    KVSpec,
    PublishAck,
    Reply,
    StoredMessage,
    StreamSpec,
    StreamUsage,
    Subscription,
    SubscriptionSpec,
)
from aclbus.errors import ACLBusError
from aclbus.permissions import Permissions
from aclbus.settings import Settings
from aclbus.specs import DeliveryMode
from aclbus_nats.connection import NatsConnection
from aclbus_nats.consuming import Consumers
from aclbus_nats.provisioning import Provisioner
from aclbus_nats.publishing import Publisher
from aclbus_nats.security import described
from aclbus_nats.settings import NatsSettings
from aclbus_nats.stored import StoredMessages
from aclbus_nats.stream_api import StreamApi

# Re-exported: it was importable from here before the backend was split into modules.
from aclbus_nats.streams import NATS_HEADER_ALLOWANCE as NATS_HEADER_ALLOWANCE
from aclbus_nats.streams import ProvisionedStreams
from aclbus_nats.subscription import NatsSubscription

if TYPE_CHECKING:
    from faststream.nats import NatsBroker
    from nats.aio.client import Client

    from aclbus_nats.server import EmbeddedServer

__all__ = ["NatsBackend", "NatsSubscription"]


class NatsBackend(Backend):
    """aclbus over NATS: core NATS for ``at_most_once``, JetStream for ``at_least_once``.

    Args:
        settings: The bus' settings.
        nats: Connection settings; None reads ``ACLBUS_NATS__*`` / ``[nats]``.
        server: An embedded server to use (and stop on close) instead of starting one when
            ``nats.servers`` is empty.
    """

    name = "nats"
    capabilities = Capabilities(
        persistent=True,
        ack=True,
        nack_delay=True,
        term=True,
        in_progress=True,
        max_deliver=True,
        backoff=True,
        dedup_window=True,
        ordered=True,
        ttl=True,
        kv=True,
        request_reply=True,
        queue_groups=True,
        wildcards=True,
        durable=True,
    )

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        nats: NatsSettings | None = None,
        server: EmbeddedServer | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        self._connection = NatsConnection(
            self.settings, nats if nats is not None else NatsSettings(), server
        )
        streams = ProvisionedStreams()
        stream_api = StreamApi(self._connection, streams)
        self._streams = streams
        self._publisher = Publisher(self._connection, streams)
        self._consumers = Consumers(self._connection, streams, stream_api)
        self._provisioner = Provisioner(self._connection, streams, stream_api)
        self._stored = StoredMessages(self._connection, stream_api)

    @property
    def nats_settings(self) -> NatsSettings:
        """The connection settings; ``servers`` is the shared embedded server's once in use.

        With no server configured and a store dir that another process serves already
        (`aclbus_nats.server.serving`), `connect` uses that server: its URL is then here.
        """
        return self._connection.nats_settings

    # -- connection --------------------------------------------------------------------------

    @property
    def broker(self) -> NatsBroker:
        """FastStream's broker, which owns the connection (made with the connection options)."""
        return self._connection.broker

    def configure_connection(self, options: ConnectionOptions) -> None:
        """Use the TLS and credentials the plugins give (the bus calls this when it is made).

        They are mapped to FastStream's security objects (`aclbus_nats.security`). The
        deprecated ``ACLBUS_NATS__TLS_*`` and credential settings still add their parts.

        Raises:
            ConfigurationError: A part is given both by a plugin and by a deprecated
                ``ACLBUS_NATS__`` setting; a TLS file is no certificate; already connected.
        """
        self._connection.configure(options)

    @property
    def connected(self) -> bool:
        """True while connected to a server."""
        return self._connection.connected

    @property
    def _nc(self) -> Client | None:
        # The nats-py client, for the adapter's own tests that look at what it runs with.
        return self._connection.nc

    @property
    def _subscriptions(self) -> frozenset[NatsSubscription]:
        # The live subscriptions, for the adapter's own tests.
        return self._consumers.live

    async def connect(self) -> None:
        """Start the embedded server if none is configured, then connect."""
        await self._connection.connect()

    async def close(self) -> None:
        """Stop every subscription, drain the connection, stop an embedded server."""
        async with self._connection.closing():
            await self._consumers.close()

    def make_app(self, bus: Any) -> Any:
        """A FastStream app on this backend's broker that runs ``bus`` (see `Bus.app`)."""
        # FastStream's app and AsyncAPI modules load only for a bus that asks for its app.
        from aclbus_nats.app import make_app

        return make_app(self, bus)

    def sibling(self) -> NatsBackend:
        """A backend with its own connection to the same server (an embedded one included)."""
        server = self._connection.server
        servers = self.nats_settings.servers or ([server.url] if server else [])
        nats = self.nats_settings.model_copy(update={"servers": servers})
        sibling = NatsBackend(self.settings, nats=nats)
        sibling.configure_connection(self._connection.plugin_options)  # the same TLS, identity
        return sibling

    @property
    def max_payload(self) -> int | None:
        """The server's ``max_payload``."""
        return self._connection.max_payload

    @property
    def server_version(self) -> tuple[int, int, int]:
        """The connected server's version."""
        return self._connection.server_version

    @property
    def server(self) -> EmbeddedServer | None:
        """The embedded server, when the backend runs one."""
        return self._connection.server

    async def describe(self) -> dict[str, Any]:
        """Server version, limits, JetStream account usage, consumers of aclbus' streams."""
        nc, js = self._connection.require()
        info = await js.account_info()
        streams: dict[str, Any] = {}
        for name in self._streams.names():
            with contextlib.suppress(ACLBusError):  # deleted meanwhile: nothing to report
                usage = await self.stream_usage(name)
                streams[name] = {"consumers": usage.consumers, "max_consumers": usage.max_consumers}
        server = self._connection.server
        policy = self._connection.policy
        return {
            "backend": self.name,
            "servers": self.nats_settings.masked_servers() or [server.url if server else "?"],
            "connected_url": nc.connected_url.netloc if nc.connected_url else None,
            "server_version": ".".join(map(str, self._connection.server_version)),
            "max_payload": nc.max_payload,
            "jetstream": {
                "streams": info.streams,
                "consumers": info.consumers,
                "memory": info.memory,
                "storage": info.storage,
                "max_consumers": info.limits.max_consumers,  # the account's; -1: none
            },
            "streams": streams,
            "embedded": server is not None,
            "security": {
                **described(self._connection.options, policy.principal if policy else None),
                "inbox_prefix": policy.inbox_prefix if policy else None,
            },
        }

    # -- provisioning ------------------------------------------------------------------------

    async def provision(self, spec: StreamSpec | KVSpec) -> None:
        """Create or update a stream or KV bucket, then check that it really is there."""
        await self._provisioner.provision(spec)

    async def kv(self, bucket: str) -> KeyValue:
        """The provisioned bucket ``bucket``."""
        return await self._provisioner.kv(bucket)

    async def stream_usage(self, stream: str) -> StreamUsage:
        """The consumers of ``stream`` against its ``max_consumers`` (one STREAM.INFO).

        Raises:
            ConfigurationError: No such stream.
            RequestTimeout: JetStream did not answer in time.
            BackendClosed: Not connected.
        """
        return await self._provisioner.stream_usage(stream)

    async def consumer_states(self) -> list[ConsumerState]:
        """The JetStream consumer info of this connection's consumers, once each."""
        return await self._consumers.states()

    @property
    def reconnects(self) -> int:
        """Times the connection came back after it was lost, since it was made."""
        return self._connection.reconnects

    async def delete_consumer(self, stream: str, consumer: str) -> bool:
        """Delete consumer ``consumer`` of ``stream``; False if there was none.

        Raises:
            ConfigurationError: No such stream.
            RequestTimeout: JetStream did not answer in time.
            BackendClosed: Not connected.
        """
        return await self._provisioner.delete_consumer(stream, consumer)

    # -- publishing --------------------------------------------------------------------------

    def enforce(self, permissions: Permissions | None) -> None:
        """Note the policy's ``permissions``: the server enforces them, not this backend.

        A core publish they do not allow (a reply under ``allow_responses``, or a refusal)
        waits for the server's verdict, so that a refused one fails at once with
        `PermissionDenied` instead of vanishing (`Publisher.publish`).
        """
        self._connection.policy = permissions

    async def publish(
        self,
        subject: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        mode: DeliveryMode = DeliveryMode.AT_LEAST_ONCE,
        msg_id: str | None = None,
        ttl: float | None = None,
        reply: str | None = None,
    ) -> PublishAck:
        """Publish on core NATS (``at_most_once``) or to JetStream, waiting for its PubAck.

        JetStream publishes are pipelined: each waits for its own PubAck on the connection's
        shared reply inbox while others are sent, up to a window of pending PubAcks.

        Raises:
            MessageTooLarge: Over the server's ``max_payload`` (before sending), or over the
                stream's ``max_msg_size``.
            HeadersTooLarge: A persistent message whose header block, ``Nats-*`` headers
                included, is over
                `aclbus_nats.publishing.JETSTREAM_MAX_HEADER_BYTES` (before sending).
            NoStream: ``at_least_once`` to a subject no stream captures.
            PublishTimeout: No PubAck within ``publish_timeout`` (maybe stored).
            StreamFull: A stream, the account or the server is out of storage.
            PermissionDenied: The server forbids this connection to publish there.
            BackendClosed: Not connected, or the reconnect buffer is full.
        """
        return await self._publisher.publish(
            subject, headers, body, mode=mode, msg_id=msg_id, ttl=ttl, reply=reply
        )

    async def request(
        self, subject: str, headers: Mapping[str, str], body: bytes, *, timeout: float
    ) -> Reply:
        """Core NATS request: NoResponders at once when nobody listens."""
        return await self._publisher.request(subject, headers, body, timeout=timeout)

    # -- consuming ---------------------------------------------------------------------------

    async def subscribe(self, spec: SubscriptionSpec, handler: DeliveryHandler) -> Subscription:
        """Subscribe on core NATS, or bind a push consumer on JetStream with manual acks.

        A lazy subscription (`SubscriptionSpec.lazy`) to a subject its stream announces
        listens to the announcements instead, and makes its consumer once the subject has a
        message: at once if one is stored already, else when the first one is announced.

        Raises:
            ConsumerLimitReached: The stream (or the JetStream account) has as many
                consumers as it may.
            NoStream: ``at_least_once`` on a subject no stream captures.
            PermissionDenied: The server forbids the subscription or the JetStream API.
            ConfigurationError: Any other refusal of the consumer, with the server's reason.
        """
        return await self._consumers.subscribe(spec, handler)

    # -- stored messages ---------------------------------------------------------------------

    async def read_stream(
        self, stream: str, *, subject: str | None = None, start: int = 1, limit: int = 100
    ) -> list[StoredMessage]:
        """The stored messages of ``stream`` from sequence ``start`` on, in order.

        Each message is one ``STREAM.MSG.GET`` request for the next one at or after a
        sequence whose subject matches (``next_by_subj``), so deleted sequences and messages
        of other subjects cost nothing; the stream leader answers, so what was just
        published or deleted is seen.

        Args:
            stream: The stream's name.
            subject: Only messages whose subject matches this (wildcards allowed).
            start: The first sequence to consider (below 1: from the first).
            limit: At most this many messages (0: none).

        Raises:
            ConfigurationError: No such stream; the message names the server's streams.
            InvalidIdentifier: ``subject`` is not a valid subject filter.
            ValueError: ``limit`` is negative.
            RequestTimeout: JetStream did not answer in time.
            BackendClosed: Not connected.
        """
        return await self._stored.read(stream, subject=subject, start=start, limit=limit)

    async def get_message(self, stream: str, sequence: int) -> StoredMessage | None:
        """The message at ``sequence`` in ``stream``; None if deleted, expired or never stored.

        Raises:
            ConfigurationError: No such stream; the message names the server's streams.
            RequestTimeout: JetStream did not answer in time.
            BackendClosed: Not connected.
        """
        return await self._stored.get(stream, sequence)

    async def delete_message(self, stream: str, sequence: int) -> bool:
        """Remove the message at ``sequence``; False if it was not stored (or had expired).

        A consumer that has not delivered it yet never will; one that delivered it and waits
        for its ack forgets it (the server publishes a ``MSG_TERMINATED`` advisory).

        Raises:
            ConfigurationError: No such stream; the message names the server's streams.
            RequestTimeout: JetStream did not answer in time.
            BackendClosed: Not connected.
        """
        return await self._stored.delete(stream, sequence)

    async def purge_stream(self, stream: str, *, subject: str | None = None) -> int:
        """Remove every stored message of ``stream`` (whose subject matches ``subject``).

        Sequences go on from where they were; consumers skip what was removed.

        Returns:
            How many messages were removed.

        Raises:
            ConfigurationError: No such stream; the message names the server's streams.
            InvalidIdentifier: ``subject`` is not a valid subject filter.
            RequestTimeout: JetStream did not answer in time.
            BackendClosed: Not connected.
        """
        return await self._stored.purge(stream, subject=subject)
