"""`MemoryBackend`: the `Backend` contract, complete, in memory, with no server to run."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, Literal, Self

from aclbus.backend import (
    Backend,
    Capabilities,
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
from aclbus.backends.memory.consumer import Consumer, ConsumerInfo
from aclbus.backends.memory.faults import FaultInjector, Faults
from aclbus.backends.memory.kv import KVWatch, MemoryKeyValue
from aclbus.backends.memory.server import MemoryServer
from aclbus.backends.memory.stream import StoredMessage as EngineMessage
from aclbus.backends.memory.stream import StreamInfo
from aclbus.backends.memory.subscription import DeliverySource, MemorySubscription
from aclbus.errors import (
    BackendClosed,
    ConfigurationError,
    HeadersTooLarge,
    MessageTooLarge,
    NoResponders,
    RequestTimeout,
)
from aclbus.subjects import check_filter, check_subject, validate_id
from aclbus.wire import encoded_size

__all__ = ["MAX_STORED_HEADER_BYTES", "MemoryBackend"]

_ALO = DeliveryMode.AT_LEAST_ONCE
_AMO = DeliveryMode.AT_MOST_ONCE

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


def _check_spec(spec: SubscriptionSpec) -> None:
    check_filter(spec.subject)
    where = f"subscription to {spec.subject!r}"
    if spec.mode not in (_ALO, _AMO):
        raise ConfigurationError(f"{where}: unknown delivery mode {spec.mode!r}")
    if spec.deliver not in ("all", "new"):
        raise ConfigurationError(f"{where}: deliver={spec.deliver!r} must be 'all' or 'new'")
    if spec.concurrency < 1:
        raise ConfigurationError(f"{where}: concurrency={spec.concurrency!r} must be >= 1")
    if not spec.ack_wait > 0:
        raise ConfigurationError(f"{where}: ack_wait={spec.ack_wait!r} must be > 0 seconds")
    if spec.max_deliver is not None and spec.max_deliver < 1:
        raise ConfigurationError(f"{where}: max_deliver={spec.max_deliver!r} must be >= 1")
    if spec.max_ack_pending < 1:
        raise ConfigurationError(f"{where}: max_ack_pending={spec.max_ack_pending!r} must be >= 1")
    if any(not delay > 0 for delay in spec.backoff):
        raise ConfigurationError(f"{where}: every backoff step must be > 0, got {spec.backoff!r}")
    if spec.durable is not None:
        validate_id(spec.durable, "durable consumer name")
    if spec.queue is not None:
        validate_id(spec.queue, "queue group")
    if spec.lazy and spec.mode == _ALO and spec.deliver != "all":
        # The first message is stored before the consumer exists: "new" would skip it.
        raise ConfigurationError(
            f"{where}: a lazy subscription delivers what is stored: deliver must be 'all'"
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

    Example::

        clock = ManualClock()
        async with MemoryBackend(clock=clock) as backend:
            await backend.provision(StreamSpec("ORDERS", ("orders.>",)))
            ...
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
        self._subscriptions: set[MemorySubscription] = set()
        self._lazy: set[_LazySubscription] = set()  # lazy ones waiting for a first message
        self._requests: set[asyncio.Future[Reply]] = set()
        self._watches: weakref.WeakSet[KVWatch] = weakref.WeakSet()

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
        return [*self._subscriptions, *self._lazy]

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
        for lazy in list(self._lazy):
            lazy.stop()
        tasks = [task for sub in list(self._subscriptions) for task in sub.abort()]
        for waiter in self._requests:
            if not waiter.done():
                waiter.set_exception(BackendClosed("the memory backend closed during a request"))
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

    # -- the contract ----------------------------------------------------------------------

    async def provision(self, spec: StreamSpec | KVSpec) -> None:
        """Create a stream or KV bucket, or update it to ``spec`` (keeping its data).

        Raises:
            ConfigurationError: A bad name, subject or limit, or subjects overlapping
                another stream's.
            BackendClosed: Not connected.
        """
        self._check()
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
        _check_spec(spec)
        if spec.mode == _AMO:
            return self._start(spec, handler, self._server.router.add(spec.subject, spec.queue))
        if spec.lazy:
            lazy = _LazySubscription(spec, self._lazy.discard)

            def ready(bound: Consumer) -> None:
                lazy.bound(self._start(spec, handler, bound))

            cancel = self._server.wait_for_consumer(spec, ready)
            if cancel is not None:
                lazy.waiting(cancel)
                self._lazy.add(lazy)
                return lazy
        return self._start(spec, handler, self._server.consumer_for(spec))

    def _start(
        self, spec: SubscriptionSpec, handler: DeliveryHandler, source: DeliverySource
    ) -> MemorySubscription:
        stream = consumer = None
        if isinstance(source, Consumer):
            stream, consumer = source.stream.name, source.name
        subscription = MemorySubscription(
            spec,
            handler,
            source,
            on_end=self._subscriptions.discard,
            stream=stream,
            consumer=consumer,
        )
        self._subscriptions.add(subscription)
        subscription.start()
        return subscription

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
        server = self._server
        if not server.router.has_interest(subject):
            raise NoResponders(subject)
        inbox = server.new_inbox()
        waiter: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

        def expire() -> None:
            if not waiter.done():
                waiter.set_exception(RequestTimeout(subject, timeout))

        server.expect_reply(inbox, waiter)
        self._requests.add(waiter)
        timer = server.clock.call_later(timeout, expire)
        try:
            server.router.route(subject, MappingProxyType(dict(headers)), body, inbox)
            return await waiter
        finally:
            timer.cancel()
            server.forget_reply(inbox)
            self._requests.discard(waiter)

    async def kv(self, bucket: str) -> KeyValue:
        """The provisioned bucket ``bucket``.

        Raises:
            ConfigurationError: No such bucket is provisioned.
            BackendClosed: Not connected.
        """
        self._check()
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

    def _stored_at(self) -> Callable[[EngineMessage], datetime]:
        """Turn the engine's store times (`Clock.now` readings) into UTC wall-clock times."""
        clock = self._server.clock
        origin = clock.wall() - timedelta(seconds=clock.now())
        return lambda msg: origin + timedelta(seconds=msg.stored)

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
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit!r}")
        owner = self._server.stream(stream)
        if subject is not None:
            check_filter(subject)
        found = owner.read(max(start, 1), subject, limit, self._server.clock.now())
        stored_at = self._stored_at()
        return [
            StoredMessage(owner.name, m.seq, m.subject, m.headers, m.body, stored_at(m))
            for m in found
        ]

    async def get_message(self, stream: str, sequence: int) -> StoredMessage | None:
        """The message at ``sequence`` in ``stream``; None if deleted, expired or never stored.

        Raises:
            ConfigurationError: No such stream; the message names the provisioned ones.
            BackendClosed: Not connected.
        """
        self._check()
        owner = self._server.stream(stream)
        msg = owner.get(sequence, self._server.clock.now()) if sequence >= 1 else None
        if msg is None:
            return None
        return StoredMessage(
            owner.name, msg.seq, msg.subject, msg.headers, msg.body, self._stored_at()(msg)
        )

    async def delete_message(self, stream: str, sequence: int) -> bool:
        """Remove the message at ``sequence``; False if it was not stored (or had expired).

        A consumer that has not delivered it yet never will; one that delivered it and waits
        for its ack forgets it (a ``MSG_TERMINATED`` advisory says so), as JetStream does.

        Raises:
            ConfigurationError: No such stream; the message names the provisioned ones.
            BackendClosed: Not connected.
        """
        self._check()
        owner = self._server.stream(stream)
        return sequence >= 1 and owner.delete(sequence, self._server.clock.now())

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
        owner = self._server.stream(stream)
        if subject is not None:
            check_filter(subject)
        return owner.purge(subject, self._server.clock.now())

    async def delete_consumer(self, stream: str, consumer: str) -> bool:
        """Delete consumer ``consumer`` of ``stream``; its subscriptions get nothing more.

        Raises:
            ConfigurationError: No such stream.
            BackendClosed: Not connected.
        """
        self._check()
        found = self._server.stream(stream).consumers.get(consumer)
        if found is None:
            return False
        for subscription in list(found.subscriptions):
            found.detach(subscription)
        found.delete()
        return True


class _LazySubscription(Subscription):
    """A lazy subscription (`SubscriptionSpec.lazy`) waiting for its subject's first message.

    Once that comes, it stands for the subscription it made for it.

    Args:
        spec: What was subscribed to.
        on_end: Called once it stops waiting (made its subscription, or unsubscribed).
    """

    def __init__(self, spec: SubscriptionSpec, on_end: Callable[[_LazySubscription], None]) -> None:
        self.spec = spec
        self._on_end = on_end
        self._cancel: Callable[[], None] | None = None
        self._inner: MemorySubscription | None = None
        self._active = True

    @property
    def active(self) -> bool:
        """False once unsubscribed or once the backend closed."""
        return self._active and (self._inner is None or self._inner.active)

    @property
    def consumer(self) -> str | None:
        """The name of its consumer once made, else None."""
        return self._inner.consumer if self._inner is not None else None

    def waiting(self, cancel: Callable[[], None]) -> None:
        """It waits; ``cancel`` ends the wait."""
        self._cancel = cancel

    def bound(self, inner: MemorySubscription) -> None:
        """Its consumer was made: from now on it is ``inner``."""
        self._inner, self._cancel = inner, None
        self._on_end(self)

    def stop(self) -> None:
        """Stop waiting (the backend closes)."""
        self._active = False
        if self._cancel is not None:
            self._cancel()
            self._cancel = None
            self._on_end(self)

    async def unsubscribe(self) -> None:
        """Stop waiting, or stop the subscription it made."""
        self.stop()
        if self._inner is not None:
            await self._inner.unsubscribe()
