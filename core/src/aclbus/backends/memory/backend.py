"""`MemoryBackend`: the `Backend` contract, complete, in memory, with no server to run."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, Literal, Self

from aclbus.backend import (
    Backend,
    Capabilities,
    ConsumerState,
    DeliveryHandler,
    DeliveryMode,
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
from aclbus.backends.memory.clock import Clock
from aclbus.backends.memory.consumer import ConsumerInfo
from aclbus.backends.memory.enforcement import Enforcer
from aclbus.backends.memory.faults import FaultInjector, Faults
from aclbus.backends.memory.kv import KVWatch, MemoryKeyValue
from aclbus.backends.memory.request_reply import Requests
from aclbus.backends.memory.server import MemoryServer
from aclbus.backends.memory.stored import StoredMessages
from aclbus.backends.memory.stream import StreamInfo
from aclbus.backends.memory.subscription_spec import check_subscription_spec
from aclbus.backends.memory.subscriptions import Subscriptions
from aclbus.errors import BackendClosed, ConfigurationError, HeadersTooLarge, MessageTooLarge
from aclbus.permissions import Permissions
from aclbus.subjects import check_subject
from aclbus.wire import encoded_size

__all__ = ["MAX_STORED_HEADER_BYTES", "MemoryBackend"]

_ALO = DeliveryMode.AT_LEAST_ONCE

MAX_STORED_HEADER_BYTES = 65535
"""The largest header block a stored message may have, as JetStream stores it (its length is
16 bits there); a core (``at_most_once``) message is limited by ``max_payload`` alone."""
_EVERYTHING = Capabilities(
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
    fault_injection=True,
)


class MemoryBackend(Backend):
    """The in-memory engine: JetStream semantics and core NATS pub/sub, without a server.

    Everything the contract promises holds here (acks, redelivery with backoff, ``max_deliver``,
    durable consumers and queue groups, dedup window, limits, TTLs, KV, request-reply), on an
    injectable `Clock` and with deterministic fault injection, so it serves both as the
    reference the conformance kit is checked against and as a fast backend for test suites.

    Args:
        settings: The bus' settings; ``settings.memory.seed`` (and ``settings.memory.faults``,
            if such a field exists) are used unless given as arguments here.
        server: Join this `MemoryServer` (shared state, like a NATS server several processes
            connect to); by default the backend makes a private one, shut down with it.
        clock: The clock of a private server (default `SystemClock`).
        faults: The faults a private server injects (default none).
        seed: The seed of a private server's fault injector (default: the settings', or 0).
        max_payload: The largest message, headers included, in bytes.

    Raises:
        ConfigurationError: ``clock``, ``faults`` or ``seed`` given together with ``server``
            (they belong to the server), or ``max_payload`` below 1.

    Example:
        ```python
        clock = ManualClock()
        async with MemoryBackend(clock=clock) as backend:
            await backend.provision(StreamSpec("ORDERS", ("orders.>",)))
            ...
        ```
    """

    name: ClassVar[str] = "memory"
    capabilities: ClassVar[Capabilities] = _EVERYTHING

    def __init__(
        self,
        settings: object | None = None,
        *,
        server: MemoryServer | None = None,
        clock: Clock | None = None,
        faults: Faults | None = None,
        seed: int | None = None,
        max_payload: int = 1_048_576,
    ) -> None:
        if max_payload < 1:
            raise ConfigurationError(f"max_payload={max_payload!r} must be at least 1 byte")
        if server is not None:
            if clock is not None or faults is not None or seed is not None:
                raise ConfigurationError(
                    "clock, faults and seed belong to the MemoryServer: pass them to "
                    "MemoryServer(...), not to a MemoryBackend that joins it"
                )
            self._server = server
            self._owns_server = False
        else:
            memory = getattr(settings, "memory", None)
            if seed is None:
                configured = getattr(memory, "seed", None)
                seed = configured if isinstance(configured, int) else 0
            if faults is None:
                configured = getattr(memory, "faults", None)
                faults = Faults.from_object(configured) if configured is not None else None
            self._server = MemoryServer(clock=clock, faults=faults, seed=seed)
            self._owns_server = True
        self._settings = settings
        self._max_payload = max_payload
        self._state: Literal["new", "open", "closed"] = "new"
        self._subscriptions = Subscriptions(self._server)
        self._requests = Requests(self._server)
        self._stored = StoredMessages(self._server)
        self._watches: weakref.WeakSet[KVWatch] = weakref.WeakSet()
        self._enforcer: Enforcer | None = None

    def sibling(self) -> MemoryBackend:
        """A new backend joined to this one's `server`, as a second connection would be."""
        return MemoryBackend(self._settings, server=self._server, max_payload=self._max_payload)

    # -- what tests reach for --------------------------------------------------------------

    @property
    def server(self) -> MemoryServer:
        """The state this backend is connected to (pass it to another backend to share it)."""
        return self._server

    @property
    def clock(self) -> Clock:
        """The engine's clock."""
        return self._server.clock

    @property
    def fault_injector(self) -> FaultInjector:
        """The fault injector: set ``fault_injector.faults`` to change faults mid-test."""
        return self._server.injector

    @property
    def max_payload(self) -> int:
        """The largest message in bytes, headers included (the ``max_payload`` argument)."""
        return self._max_payload

    @property
    def subscriptions(self) -> list[Subscription]:
        """The active subscriptions made through this backend (lazy ones still waiting too)."""
        return self._subscriptions.all()

    def stream_info(self, name: str) -> StreamInfo:
        """The state of stream ``name``: message count, bytes, first and last sequence.

        Works before `connect` and after `close` too, for assertions.

        Raises:
            ConfigurationError: No stream ``name`` is provisioned.
        """
        return self._server.stream_info(name)

    def consumer_info(self, stream: str, consumer: str) -> ConsumerInfo:
        """The state of a consumer: pending, ack pending, delivery and redelivery counts.

        ``consumer`` is the durable name, the queue group of a group without one, or
        `MemorySubscription.consumer` for a subscription's own consumer.

        Raises:
            ConfigurationError: No such stream or consumer.
        """
        return self._server.consumer_info(stream, consumer)

    async def consumer_states(self) -> list[ConsumerState]:
        """The state of the consumers of this backend's live subscriptions, each once."""
        states: dict[tuple[str, str], ConsumerState] = {}
        for sub in self._subscriptions.all():
            stream, consumer = getattr(sub, "stream", None), getattr(sub, "consumer", None)
            if stream is None or consumer is None or (stream, consumer) in states:
                continue
            try:
                info = self._server.consumer_info(stream, consumer)
            except ConfigurationError:  # deleted under a subscription that is going away
                continue
            states[stream, consumer] = ConsumerState(
                stream=stream,
                consumer=consumer,
                pending=info.num_pending,
                ack_pending=info.num_ack_pending,
                redelivered=info.num_redelivered,
            )
        return list(states.values())

    # -- life ------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the backend. Idempotent while open.

        Raises:
            BackendClosed: The backend was closed (make a new one; share state with
                ``server=``), or its server was shut down.
        """
        if self._state == "closed":
            raise BackendClosed(
                "this memory backend was closed; make a new MemoryBackend "
                "(pass server= to keep the streams and consumers)"
            )
        self._server.check_open()
        self._state = "open"

    async def close(self) -> None:
        """Close the backend. Idempotent.

        Stops every subscription (cancelling the handlers still running), fails the requests
        still waiting with `BackendClosed`, ends the KV watches and shuts a private server
        down. Durable consumers of a shared server keep their state.
        """
        if self._state == "closed":
            return
        self._state = "closed"
        tasks = self._subscriptions.stop()
        self._requests.close()
        for watch in list(self._watches):
            watch.close()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._owns_server:
            self._server.shutdown()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _check(self) -> None:
        if self._state != "open":
            raise BackendClosed(
                "the memory backend is closed"
                if self._state == "closed"
                else "the memory backend is not connected: await backend.connect() first"
            )

    def enforce(self, permissions: Permissions | None) -> None:
        """Refuse from now on what ``permissions`` forbid, as nats-server would (None: nothing).

        See `aclbus.backends.memory.enforcement` for how each operation is checked.
        """
        self._enforcer = (
            None
            if permissions is None
            else Enforcer(permissions, self._server, self._subscriptions)
        )

    # -- the contract ----------------------------------------------------------------------

    async def provision(self, spec: StreamSpec | KVSpec) -> None:
        """Create a stream or KV bucket, or update it to ``spec`` (keeping its data).

        Raises:
            ConfigurationError: A bad name, subject or limit, or subjects overlapping
                another stream's.
            BackendClosed: Not connected.
        """
        self._check()
        if self._enforcer is not None:
            self._enforcer.provision(
                spec.name if isinstance(spec, StreamSpec) else f"KV_{spec.bucket}"
            )
        self._server.provision(spec)

    def _checked(self, subject: str, headers: Mapping[str, str], body: bytes) -> tuple[bytes, int]:
        check_subject(subject)
        if type(body) is not bytes:
            body = bytes(body)
        size = encoded_size(headers, body)
        if size > self._max_payload:
            raise MessageTooLarge(size, self._max_payload, f"message on {subject!r}")
        return body, size

    async def publish(
        self,
        subject: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        mode: DeliveryMode = _ALO,
        msg_id: str | None = None,
        ttl: float | None = None,
        reply: str | None = None,
    ) -> PublishAck:
        """Publish one message: routed at once (``at_most_once``) or stored (``at_least_once``).

        Args:
            subject: Where to (no wildcards).
            headers: Its headers (copied: later changes by the caller are not seen).
            body: Its body.
            mode: ``at_least_once`` stores it in the stream that captures ``subject``.
            msg_id: The dedup key within the stream's ``duplicate_window``.
            ttl: Seconds after which the stored message expires undelivered.
            reply: A reply subject for the receivers (``at_most_once`` only: a stored
                message carries none, as in JetStream).

        Raises:
            NoStream: ``at_least_once`` to a subject no stream captures.
            MessageTooLarge: Over ``max_payload``, or over the stream's ``max_msg_size``.
            HeadersTooLarge: ``at_least_once`` with a header block over
                `MAX_STORED_HEADER_BYTES` (a `MessageTooLarge`).
            ConfigurationError: A ``ttl`` on a stream that does not allow message TTLs.
            InvalidIdentifier: An empty subject, an empty token or a wildcard in it.
            BackendClosed: Not connected.
        """
        if self._state != "open":
            self._check()
        body, size = self._checked(subject, headers, body)
        if self._enforcer is not None:
            self._enforcer.publish(subject)
        if mode is _ALO and size - len(body) > MAX_STORED_HEADER_BYTES:
            raise HeadersTooLarge(size - len(body), MAX_STORED_HEADER_BYTES, subject)
        return self._server.publish(
            subject,
            MappingProxyType(dict(headers)),
            body,
            size,
            mode=mode,
            msg_id=msg_id,
            ttl=ttl,
            reply=reply,
        )

    async def subscribe(self, spec: SubscriptionSpec, handler: DeliveryHandler) -> Subscription:
        """Start ``spec.concurrency`` workers delivering the messages of ``spec`` to ``handler``.

        Returns:
            A `MemorySubscription`.

        Raises:
            NoStream: ``at_least_once`` on a subject no stream stores.
            ConfigurationError: An invalid spec, or a durable name already bound to another
                subject.
            BackendClosed: Not connected.
        """
        self._check()
        check_subscription_spec(spec)
        if self._enforcer is not None:
            self._enforcer.subscribe(spec)
        return self._subscriptions.start(spec, handler)

    async def request(
        self, subject: str, headers: Mapping[str, str], body: bytes, *, timeout: float
    ) -> Reply:
        """Publish a request with a fresh ``_INBOX.*`` reply subject; wait for the first reply.

        Raises:
            NoResponders: No subscription matches ``subject`` (raised at once).
            RequestTimeout: No reply within ``timeout`` seconds of the engine's clock.
            ConfigurationError: ``timeout`` is not above 0.
            BackendClosed: Not connected, or closed while waiting.
        """
        self._check()
        body, _ = self._checked(subject, headers, body)
        if not timeout > 0:
            raise ConfigurationError(f"request timeout must be > 0 seconds, got {timeout!r}")
        if self._enforcer is not None:
            self._enforcer.publish(subject)
        return await self._requests.send(subject, headers, body, timeout=timeout)

    async def kv(self, bucket: str) -> KeyValue:
        """The provisioned bucket ``bucket``.

        Raises:
            ConfigurationError: No such bucket is provisioned.
            BackendClosed: Not connected.
        """
        self._check()
        if self._enforcer is not None:
            self._enforcer.kv(bucket)
        return MemoryKeyValue(
            self._server.bucket(bucket),
            check=self._check,
            track=self._watches.add,
            max_payload=self._max_payload,
        )

    async def stream_usage(self, stream: str) -> StreamUsage:
        """How many consumers ``stream`` has, against its ``max_consumers``.

        Raises:
            ConfigurationError: No such stream; the message names the provisioned ones.
            BackendClosed: Not connected.
        """
        self._check()
        if self._enforcer is not None:
            self._enforcer.stream("INFO", stream)
        owner = self._server.stream(stream)
        return StreamUsage(owner.name, len(owner.consumers), owner.spec.max_consumers)

    async def describe(self) -> dict[str, Any]:
        """Facts for ``aclbus doctor``: streams, consumers, buckets, subscriptions, faults."""
        facts: dict[str, Any] = {
            "backend": self.name,
            "connected": self._state == "open",
            "max_payload": self._max_payload,
            "subscriptions": len(self._subscriptions),
            "shared_server": not self._owns_server,
        }
        facts.update(self._server.describe())
        return facts

    # -- stored messages -------------------------------------------------------------------

    async def read_stream(
        self, stream: str, *, subject: str | None = None, start: int = 1, limit: int = 100
    ) -> list[StoredMessage]:
        """The live messages of ``stream`` from sequence ``start`` on, in order.

        Expired messages are not returned (they are removed on the way); deleted ones leave
        a gap in the sequences.

        Args:
            stream: The stream's name.
            subject: Only messages whose subject matches this (wildcards allowed).
            start: The first sequence to consider (below 1: from the first).
            limit: At most this many messages (0: none).

        Raises:
            ConfigurationError: No such stream; the message names the provisioned ones.
            InvalidIdentifier: ``subject`` is not a valid subject filter.
            ValueError: ``limit`` is negative.
            BackendClosed: Not connected.
        """
        self._check()
        if self._enforcer is not None:
            self._enforcer.stream("MSG.GET", stream)
        return self._stored.read(stream, subject, start, limit)

    async def get_message(self, stream: str, sequence: int) -> StoredMessage | None:
        """The message at ``sequence`` in ``stream``; None if deleted, expired or never stored.

        Raises:
            ConfigurationError: No such stream; the message names the provisioned ones.
            BackendClosed: Not connected.
        """
        self._check()
        if self._enforcer is not None:
            self._enforcer.stream("MSG.GET", stream)
        return self._stored.get(stream, sequence)

    async def delete_message(self, stream: str, sequence: int) -> bool:
        """Remove the message at ``sequence``; False if it was not stored (or had expired).

        A consumer that has not delivered it yet never will; one that delivered it and waits
        for its ack forgets it (a ``MSG_TERMINATED`` advisory says so), as JetStream does.

        Raises:
            ConfigurationError: No such stream; the message names the provisioned ones.
            BackendClosed: Not connected.
        """
        self._check()
        if self._enforcer is not None:
            self._enforcer.stream("MSG.DELETE", stream)
        return self._stored.delete(stream, sequence)

    async def purge_stream(self, stream: str, *, subject: str | None = None) -> int:
        """Remove every live message of ``stream`` (whose subject matches ``subject``).

        Sequences go on from where they were; consumers skip what was removed.

        Returns:
            How many messages were removed (expired ones are not counted).

        Raises:
            ConfigurationError: No such stream; the message names the provisioned ones.
            InvalidIdentifier: ``subject`` is not a valid subject filter.
            BackendClosed: Not connected.
        """
        self._check()
        if self._enforcer is not None:
            self._enforcer.stream("PURGE", stream)
        return self._stored.purge(stream, subject)

    async def delete_consumer(self, stream: str, consumer: str) -> bool:
        """Delete consumer ``consumer`` of ``stream``; its subscriptions get nothing more.

        Raises:
            ConfigurationError: No such stream.
            BackendClosed: Not connected.
        """
        self._check()
        if self._enforcer is not None:
            self._enforcer.consumer("DELETE", stream, consumer)
        found = self._server.stream(stream).consumers.get(consumer)
        if found is None:
            return False
        for subscription in list(found.subscriptions):
            found.detach(subscription)
        found.delete()
        return True
