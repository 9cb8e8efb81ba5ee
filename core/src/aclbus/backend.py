"""The Backend contract: the small surface a broker adapter implements.

A backend moves encoded messages (subject, headers, body); it knows nothing of ACL. The bus
encodes, runs the plugins' middleware and decodes; the backend provisions streams and KV
buckets, publishes, delivers to subscriptions with acknowledgement, and answers requests.
`aclbus.backends.memory.MemoryBackend` is the complete reference implementation, used by our
own tests the way httpx tests itself with its ``MockTransport``.

Semantics every backend follows (the conformance kit in `aclbus.testing` checks them):

- ``at_most_once``: delivered to the subscriptions present at publish time, not stored, no
  acknowledgement (``ack``/``nack``/``term`` are accepted and do nothing).
- ``at_least_once``: stored in the stream that captures the subject (`NoStream` when none
  does); delivered to each consumer until acknowledged; ``nack(delay)`` redelivers after the
  delay, ``term`` never again, ``in_progress`` resets the ack timer; no ack within
  ``ack_wait`` redelivers; ``attempt`` counts deliveries from 1; after ``max_deliver``
  attempts the message is not delivered again.
- Subscriptions with the same ``durable`` name share one consumer (its position survives
  unsubscribe); with the same ``queue`` they split the messages between them.
- ``clock``: the time the backend's deadlines and timestamps follow. Real time by default; the
  memory engine's own clock (a `ManualClock` in tests), so that what reads the time through
  it (plugins' deadlines, presence beats) moves with the engine's TTLs and ack timers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from aclbus.capabilities import Capabilities
from aclbus.clock import Clock, SystemClock
from aclbus.connection_options import ConnectionOptions
from aclbus.errors import ConfigurationError
from aclbus.kv import KeyValue, KVConflict, KVEntry, check_revision
from aclbus.permissions import Permissions
from aclbus.received import Received
from aclbus.received import Settlement as Settlement  # (the type of `Received.settled`)
from aclbus.specs import (
    ConsumerState,
    DeliveryMode,
    KVSpec,
    PublishAck,
    Reply,
    StoredMessage,
    StreamSpec,
    StreamUsage,
    SubscriptionSpec,
)

__all__ = [
    "Backend",
    "BackendFactory",
    "Capabilities",
    "Clock",
    "ConnectionOptions",
    "ConsumerState",
    "DeliveryHandler",
    "DeliveryMode",
    "KVConflict",
    "KVEntry",
    "KVSpec",
    "KeyValue",
    "PublishAck",
    "Received",
    "Reply",
    "StoredMessage",
    "StreamSpec",
    "StreamUsage",
    "Subscription",
    "SubscriptionSpec",
    "SystemClock",
    "check_revision",
]

_SYSTEM_CLOCK = SystemClock()


DeliveryHandler = Callable[[Received], Awaitable[None]]
"""What a subscription calls for each delivery. It settles the delivery itself; if it returns
without settling an ``at_least_once`` delivery, the message is redelivered after ``ack_wait``."""


class Subscription(ABC):
    """A live subscription; `unsubscribe` stops delivery to it at once."""

    spec: SubscriptionSpec

    @property
    @abstractmethod
    def active(self) -> bool:
        """False once unsubscribed or once the backend closed."""

    @abstractmethod
    async def unsubscribe(self) -> None:
        """Stop delivery; deliveries being handled finish, unacked ones are redelivered later.

        A durable consumer keeps its position for the next subscription with its name.
        """


class Backend(ABC):
    """A broker adapter. Subclasses set ``name`` and ``capabilities`` and implement the rest.

    A backend is made by its factory (usually the class itself) from the bus' `Settings`, then
    ``connect``-ed; every other method may be called only while connected.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def configure_connection(self, options: ConnectionOptions) -> None:
        """Take the TLS and credentials that plugins contribute, before `connect`.

        The bus calls this once, when it is made, with what the plugins'
        ``aclbus_connection_options`` hooks gave (`ConnectionOptions`, empty when none did).
        A backend with a connection maps them to its client's options; the names of the
        settings they carry are what its refusal messages name. The default ignores them: a
        backend without a connection (memory) has nothing to use them for.

        Args:
            options: TLS (files, or a ready `ssl.SSLContext`) and one way to authenticate.

        Raises:
            ConfigurationError: The options cannot be used (a file that is not a certificate,
                or the backend's own settings give the same part too).
        """
        return None

    @abstractmethod
    async def connect(self) -> None:
        """Connect to the broker (or start the engine)."""

    @abstractmethod
    async def close(self) -> None:
        """Stop every subscription, finish in-flight publishes, disconnect. Idempotent."""

    @abstractmethod
    async def provision(self, spec: StreamSpec | KVSpec) -> None:
        """Create a stream or KV bucket, or update it to ``spec`` if it exists."""

    @abstractmethod
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
        """Publish one message.

        Args:
            subject: Where to.
            headers: Its headers.
            body: Its body.
            mode: ``at_least_once`` stores it (and waits for the broker's ack).
            msg_id: The dedup key within the stream's ``duplicate_window``.
            ttl: Seconds after which the broker drops it undelivered (``ttl`` capability).
            reply: A reply subject for the receiver (``at_most_once`` requests).

        Raises:
            NoStream: ``at_least_once`` to a subject no stream captures.
            MessageTooLarge: Over the broker's or the stream's limit; `HeadersTooLarge` (a
                `MessageTooLarge`) when only the header block is over the broker's limit
                for a stored message (JetStream, and the memory engine: 65535 bytes).
            BackendClosed: Not connected.
        """

    @abstractmethod
    async def subscribe(self, spec: SubscriptionSpec, handler: DeliveryHandler) -> Subscription:
        """Start delivering messages that match ``spec`` to ``handler``."""

    @abstractmethod
    async def request(
        self, subject: str, headers: Mapping[str, str], body: bytes, *, timeout: float
    ) -> Reply:
        """Send a request (``at_most_once``) and wait for the first reply.

        Raises:
            NoResponders: No subscription listens on ``subject`` (raised at once).
            RequestTimeout: No reply within ``timeout`` seconds.
        """

    @abstractmethod
    async def kv(self, bucket: str) -> KeyValue:
        """The provisioned key-value bucket ``bucket``."""

    async def describe(self) -> dict[str, Any]:
        """Facts about the broker for ``aclbus doctor`` (server version, limits, …)."""
        return {"backend": self.name}

    async def stream_usage(self, stream: str) -> StreamUsage:
        """How many consumers ``stream`` has and may have (``aclbus doctor`` shows it).

        Raises:
            ConfigurationError: No such stream.
            NotImplementedError: The backend stores nothing (no ``persistent`` capability).
        """
        raise NotImplementedError(f"backend {self.name!r} has no streams")

    async def consumer_states(self) -> list[ConsumerState]:
        """The state of each consumer this backend's live subscriptions consume from.

        Backlog (``pending``), unacked deliveries and redeliveries, one entry per consumer
        (subscriptions sharing a durable consumer report it once). Metrics poll it
        (``aclbus-metrics``). A backend that keeps no consumers reports none.

        .. versionadded:: 0.2
        """
        return []

    @property
    def reconnects(self) -> int:
        """Times the connection to the broker came back after it was lost (0 without one).

        .. versionadded:: 0.2
        """
        return 0

    # -- stored messages (persistent backends; the dead-letter queue is built on these) ------

    async def read_stream(
        self, stream: str, *, subject: str | None = None, start: int = 1, limit: int = 100
    ) -> list[StoredMessage]:
        """Stored messages of ``stream`` from sequence ``start`` on, in order.

        Args:
            stream: The stream's name.
            subject: Only messages whose subject matches this (wildcards allowed).
            start: The first sequence to consider.
            limit: At most this many messages.

        Raises:
            ConfigurationError: No such stream.
            NotImplementedError: The backend stores nothing (no ``persistent`` capability).
        """
        raise NotImplementedError(f"backend {self.name!r} stores no messages")

    async def get_message(self, stream: str, sequence: int) -> StoredMessage | None:
        """The message at ``sequence`` in ``stream``, or None if it is gone (or never was)."""
        raise NotImplementedError(f"backend {self.name!r} stores no messages")

    async def delete_message(self, stream: str, sequence: int) -> bool:
        """Remove one stored message; False if it was not there."""
        raise NotImplementedError(f"backend {self.name!r} stores no messages")

    async def purge_stream(self, stream: str, *, subject: str | None = None) -> int:
        """Remove every stored message of ``stream`` (matching ``subject``); return how many."""
        raise NotImplementedError(f"backend {self.name!r} stores no messages")

    async def delete_consumer(self, stream: str, consumer: str) -> bool:
        """Delete a durable consumer and its position; False if there was none.

        A member that leaves a group deletes its consumer, so that a later join starts from
        new messages instead of those sent while it was away.
        """
        raise NotImplementedError(f"backend {self.name!r} has no durable consumers")

    def enforce(self, permissions: Permissions | None) -> None:
        """Hold this connection to ``permissions`` (a policy's, for the bus' principal).

        The bus calls it before `connect` with what the plugins' `aclbus_connection_permissions`
        returned. A backend whose server enforces the permissions itself (nats-server, given
        the same policy rendered by ``aclbus policy render``) keeps this default, which does
        nothing; one without such a server (the memory engine) refuses what the server would
        refuse, at once, with `PermissionDenied` naming the operation and subject.

        Args:
            permissions: What the connection may do; None: no restriction.
        """
        return  # the server enforces them

    def make_app(self, bus: Any) -> Any:
        """A FastStream application that runs ``bus`` (see `Bus.app`).

        Raises:
            ConfigurationError: The backend is not built on a FastStream broker.
        """
        raise ConfigurationError(
            f"backend {self.name!r} has no FastStream broker: use the nats backend "
            "(ACLBUS_BACKEND=nats) to run agents with `faststream run`"
        )

    def sibling(self) -> Backend:
        """A new, unconnected backend on the same broker, with a connection of its own.

        It is what another process would get by configuration: tests and the demo use it to
        run several buses (agents that would live in separate processes) against one broker,
        an embedded one included.

        Raises:
            NotImplementedError: The backend cannot make one.
        """
        raise NotImplementedError(f"backend {self.name!r} cannot make a sibling")

    @property
    def max_payload(self) -> int | None:
        """The broker's largest message in bytes, or None if it has no limit."""
        return None

    @property
    def clock(self) -> Clock:
        """The clock the backend's deadlines and timestamps follow.

        Real time (a shared `SystemClock`) unless the backend runs on a clock of its own, as
        the memory engine does (`MemoryBackend(clock=ManualClock())`). May be read before
        `connect`.
        """
        return _SYSTEM_CLOCK


BackendFactory = Callable[..., Backend]
"""Makes a backend from the bus' `Settings`: ``factory(settings) -> Backend``."""
