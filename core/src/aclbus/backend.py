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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from aclbus.clock import Clock, SystemClock
from aclbus.errors import ACLBusError, ConfigurationError

__all__ = [
    "Backend",
    "BackendFactory",
    "Capabilities",
    "Clock",
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


class DeliveryMode(StrEnum):
    """How hard the broker tries to deliver a message."""

    AT_MOST_ONCE = "at_most_once"
    """Fast and not persisted: core NATS; lost if nobody is subscribed at publish time."""
    AT_LEAST_ONCE = "at_least_once"
    """Persisted and acknowledged: JetStream; redelivered until acked, terminated or exhausted."""


_SYSTEM_CLOCK = SystemClock()


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do. A plugin or test that needs a capability names it here.

    Every flag defaults to False, so ``Capabilities(ack=True)`` reads as "needs ack".
    """

    persistent: bool = False
    """Messages published ``at_least_once`` are stored and survive a consumer being away."""
    ack: bool = False
    """Explicit ack; an unacked message is redelivered after ``ack_wait``."""
    nack_delay: bool = False
    """``nack(delay=...)`` holds the redelivery back for the delay."""
    term: bool = False
    """``term()`` stops all further delivery of a message."""
    in_progress: bool = False
    """``in_progress()`` resets the ack timer of a long handler."""
    max_deliver: bool = False
    """A message is delivered at most ``max_deliver`` times."""
    backoff: bool = False
    """Redeliveries after an ack timeout follow the subscription's ``backoff`` schedule."""
    dedup_window: bool = False
    """A second publish with the same message id within the window is not stored again."""
    ordered: bool = False
    """Messages of one subject are delivered in publish order (with one handler at a time)."""
    ttl: bool = False
    """Per-message TTL: an expired message is not delivered."""
    kv: bool = False
    """Key-value buckets with revisions, compare-and-set and watch."""
    request_reply: bool = False
    """Requests with a reply, a timeout and an immediate failure when nobody listens."""
    queue_groups: bool = False
    """Subscriptions in one queue group split the messages (competing consumers)."""
    wildcards: bool = False
    """Subscriptions may use ``*`` and ``>`` wildcards."""
    durable: bool = False
    """A named consumer keeps its position while no subscription is attached."""
    fault_injection: bool = False
    """Faults (duplicates, reordering, drops, delays) can be injected deterministically."""

    def missing(self, required: Capabilities) -> list[str]:
        """The names of the capabilities ``required`` asks for that this set lacks."""
        return [
            f.name for f in fields(self) if getattr(required, f.name) and not getattr(self, f.name)
        ]

    def names(self) -> list[str]:
        """The names of the capabilities present."""
        return [f.name for f in fields(self) if getattr(self, f.name)]


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """A stream to provision: where ``at_least_once`` messages of some subjects are stored.

    Durations are in seconds; None means no limit. ``discard`` says what a full stream does:
    ``"new"`` refuses the publish with `StreamFull` (nothing stored is lost), ``"old"`` drops
    the oldest messages to make room, read or not.

    ``max_consumers`` is how many consumers the stream may have; one more is refused with
    `ConsumerLimitReached`. None leaves it to the broker, whose default may be low
    (nats-server 2.15 refuses the 1,001st consumer of a stream that sets no limit).

    ``announce`` is a subject pattern within ``subjects`` whose messages the broker announces
    as it stores them, so that `SubscriptionSpec.lazy` subscriptions to subjects under it make
    their consumer when the first message comes (one pattern per stream; NATS: the stream's
    RePublish, headers only). None: no lazy subscription on this stream.
    """

    name: str
    subjects: tuple[str, ...]
    max_age: float | None = None
    max_bytes: int | None = None
    max_msgs: int | None = None
    max_msg_size: int | None = None
    duplicate_window: float = 120.0
    allow_msg_ttl: bool = True
    storage: Literal["file", "memory"] = "file"
    replicas: int = 1
    discard: Literal["old", "new"] = "new"
    max_consumers: int | None = None
    announce: str | None = None


@dataclass(frozen=True, slots=True)
class StreamUsage:
    """How many consumers a stream has, against its limit (what `Backend.stream_usage` says).

    Attributes:
        stream: The stream's name.
        consumers: Its consumers now, durable ones without a subscriber included.
        max_consumers: Its limit; None when it sets none (the broker's default applies).
    """

    stream: str
    consumers: int
    max_consumers: int | None

    @property
    def free(self) -> int | None:
        """Consumers that may still be made; None when the stream sets no limit."""
        if self.max_consumers is None:
            return None
        return max(self.max_consumers - self.consumers, 0)


@dataclass(frozen=True, slots=True)
class KVSpec:
    """A key-value bucket to provision.

    Attributes:
        bucket: The bucket name (an id).
        ttl: Seconds after which an entry expires, or None.
        history: How many revisions of each key are kept.
        replicas: Copies of the bucket on a cluster (as for streams).
        storage: ``file`` or ``memory``.
    """

    bucket: str
    ttl: float | None = None
    history: int = 1
    replicas: int = 1
    storage: Literal["file", "memory"] = "file"


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    """What to subscribe to and how.

    Attributes:
        subject: The subject, wildcards allowed where the backend has ``wildcards``.
        mode: ``at_least_once`` consumes from the stream with acks; ``at_most_once`` is a plain
            subscription.
        durable: Name of a durable consumer (``at_least_once``): it keeps its position while no
            subscription is attached. None: a consumer that lives as long as the subscription.
        queue: Subscriptions with the same queue (and, ``at_least_once``, the same durable)
            split the messages between them.
        deliver: ``"all"`` starts from the first stored message (a new durable), ``"new"`` from
            messages published after subscribing.
        ack_wait: Seconds before an unacknowledged delivery is redelivered.
        max_deliver: Deliveries after which a message is given up; None: no limit.
        backoff: Delays before successive redeliveries after an ack timeout (the last one
            repeats); empty: ``ack_wait`` every time.
        max_ack_pending: Deliveries in flight (unacked) at most, per consumer.
        concurrency: Deliveries this subscription hands to its handler at the same time; 1
            keeps publish order.
        lazy: For a durable ``at_least_once`` subscription to a subject that is rarely used
            (an agent's priority lane): its consumer is made only once the subject has a
            message, one stored before or the first one stored later, so until then the
            subscription costs the broker no consumer. Once made, the consumer is a durable
            like any other. Lazy only where the stream announces the subject
            (`StreamSpec.announce`); elsewhere the consumer is made at once.
    """

    subject: str
    mode: DeliveryMode = DeliveryMode.AT_LEAST_ONCE
    durable: str | None = None
    queue: str | None = None
    deliver: Literal["all", "new"] = "all"
    ack_wait: float = 30.0
    max_deliver: int | None = None
    backoff: tuple[float, ...] = ()
    max_ack_pending: int = 1000
    concurrency: int = 1
    lazy: bool = False


@dataclass(frozen=True, slots=True)
class PublishAck:
    """The broker's answer to a publish.

    Attributes:
        stream: The stream that stored the message (None for ``at_most_once``).
        sequence: Its sequence in that stream (None for ``at_most_once``).
        duplicate: True when the message id was already stored within the dedup window, so
            this publish stored nothing.
    """

    stream: str | None = None
    sequence: int | None = None
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to `Backend.request`."""

    subject: str
    headers: Mapping[str, str]
    body: bytes


Settlement = Literal["ack", "nack", "term"]


class Received(ABC):
    """One delivery of a message to a subscription, with the means to settle it.

    Backends subclass it and implement ``_ack``, ``_nack``, ``_term`` and ``_in_progress``;
    the base makes settlement happen once (a second ``ack``/``nack``/``term`` is ignored) and
    remembers how it was settled.

    Attributes:
        subject: The subject it was published to.
        headers: Its headers as sent.
        body: Its body as sent.
        reply: Where the sender of a request waits for the reply, or None.
        attempt: The delivery count, from 1.
        sequence: Its sequence in the stream (None for ``at_most_once``).
        mode: The delivery mode of the subscription it came through.
        stream: The stream it was stored in (None for ``at_most_once``).
    """

    __slots__ = (
        "_settled",
        "attempt",
        "body",
        "headers",
        "mode",
        "reply",
        "sequence",
        "stream",
        "subject",
    )

    def __init__(
        self,
        subject: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        reply: str | None = None,
        attempt: int = 1,
        sequence: int | None = None,
        mode: DeliveryMode = DeliveryMode.AT_LEAST_ONCE,
        stream: str | None = None,
    ) -> None:
        self.subject = subject
        self.stream = stream
        self.headers = headers
        self.body = body
        self.reply = reply
        self.attempt = attempt
        self.sequence = sequence
        self.mode = mode
        self._settled: Settlement | None = None

    @property
    def settled(self) -> Settlement | None:
        """How this delivery was settled (``"ack"``, ``"nack"``, ``"term"``), or None yet."""
        return self._settled

    async def ack(self) -> None:
        """Acknowledge: the message is done and will not be delivered again."""
        if self._settled is None:
            self._settled = "ack"
            await self._ack()

    async def nack(self, delay: float | None = None) -> None:
        """Refuse for now: deliver again after ``delay`` seconds (at once when None)."""
        if delay is not None and delay < 0:
            raise ValueError(f"nack delay must be >= 0 seconds, got {delay!r}")
        if self._settled is None:
            self._settled = "nack"
            await self._nack(delay)

    async def term(self, reason: str | None = None) -> None:
        """Give up on the message: it is never delivered again (``reason`` is recorded)."""
        if self._settled is None:
            self._settled = "term"
            await self._term(reason)

    async def in_progress(self) -> None:
        """Tell the broker the handler is still working: restart the ack timer."""
        if self._settled is None:
            await self._in_progress()

    @abstractmethod
    async def _ack(self) -> None: ...

    @abstractmethod
    async def _nack(self, delay: float | None) -> None: ...

    @abstractmethod
    async def _term(self, reason: str | None) -> None: ...

    @abstractmethod
    async def _in_progress(self) -> None: ...


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


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as a stream stores it (what `Backend.read_stream` returns).

    Attributes:
        stream: The stream's name.
        sequence: Its sequence in the stream.
        subject: The subject it was published to.
        headers: Its headers as stored (the broker's own ``Nats-*`` ones may be among them).
        body: Its body.
        time: When the stream stored it (UTC).
    """

    stream: str
    sequence: int
    subject: str
    headers: Mapping[str, str]
    body: bytes
    time: datetime


class KVConflict(ACLBusError):
    """A key-value write whose precondition failed: the key exists, or its revision moved.

    Raised by `KeyValue.create`, `KeyValue.update` and a conditional `KeyValue.delete`.
    """

    def __init__(self, bucket: str, key: str, detail: str) -> None:
        self.bucket = bucket
        self.key = key
        super().__init__(f"{bucket}/{key}: {detail}")


@dataclass(frozen=True, slots=True)
class KVEntry:
    """One revision of a key. ``operation`` is ``"delete"`` for a deletion marker."""

    bucket: str
    key: str
    value: bytes
    revision: int
    created: datetime
    operation: Literal["put", "delete"] = "put"


def check_revision(revision: int) -> int:
    """``revision`` if it can be a revision to compare with (1 or more).

    Raises:
        ValueError: It is below 1.
    """
    if revision < 1:
        raise ValueError(
            f"revision must be >= 1 (revisions start at 1), got {revision!r}; "
            "delete(key) without a revision deletes unconditionally"
        )
    return revision


class KeyValue(ABC):
    """A key-value bucket: revisions, compare-and-set, watch. Keys are dotted ids."""

    bucket: str

    @abstractmethod
    async def get(self, key: str) -> KVEntry | None:
        """The latest live entry of ``key``, or None if absent, deleted or expired."""

    @abstractmethod
    async def put(self, key: str, value: bytes) -> int:
        """Write ``value``; return the new revision."""

    @abstractmethod
    async def create(self, key: str, value: bytes) -> int:
        """Write only if ``key`` has no live entry; raise `KVConflict` otherwise."""

    @abstractmethod
    async def update(self, key: str, value: bytes, revision: int) -> int:
        """Write only if the latest revision of ``key`` is ``revision``; else `KVConflict`."""

    @abstractmethod
    async def delete(self, key: str, *, revision: int | None = None) -> None:
        """Delete ``key`` (a deletion marker that watchers see).

        Args:
            key: The key.
            revision: Delete only if the latest revision of ``key`` (a deletion marker's
                included) is this one: compare-and-delete, as `update` is compare-and-set.
                None deletes whatever the latest is.

        Raises:
            KVConflict: ``revision`` is not the latest revision of ``key`` (nothing deleted).
            ValueError: ``revision`` is below 1 (revisions start at 1).
        """

    @abstractmethod
    async def keys(self) -> list[str]:
        """The keys with a live entry, sorted."""

    @abstractmethod
    def watch(self, pattern: str = ">") -> AsyncIterator[KVEntry]:
        """Yield every change to keys matching ``pattern`` from now on, until closed."""

    async def started_watch(self, pattern: str = ">") -> AsyncIterator[KVEntry]:
        """`watch`, returned once the watcher is in place: no later change can be missed.

        A backend whose watcher starts at once (memory) need not override it; one whose
        watcher starts with a round trip to the server (NATS) waits for it here.
        """
        return self.watch(pattern)


class Backend(ABC):
    """A broker adapter. Subclasses set ``name`` and ``capabilities`` and implement the rest.

    A backend is made by its factory (usually the class itself) from the bus' `Settings`, then
    ``connect``-ed; every other method may be called only while connected.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

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
