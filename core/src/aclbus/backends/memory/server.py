"""`MemoryServer`: the state behind memory backends, as a NATS server with JetStream holds it.

Streams, consumers, KV buckets, core subscriptions, the clock and the fault injector live here;
a `MemoryBackend` is one connection to it. Each backend makes a private server by default;
backends made with the same ``server=`` share it, as processes share a NATS server: they
talk to each other, and a durable consumer outlives the backend that created it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from aclbus.backend import (
    DeliveryMode,
    KVSpec,
    PublishAck,
    Reply,
    StreamSpec,
    SubscriptionSpec,
)
from aclbus.backends.memory.clock import Clock, SystemClock
from aclbus.backends.memory.consumer import Consumer, ConsumerInfo
from aclbus.backends.memory.faults import FaultInjector, Faults
from aclbus.backends.memory.kv import Bucket
from aclbus.backends.memory.pubsub import CoreRouter
from aclbus.backends.memory.stream import Stream, StreamInfo
from aclbus.errors import (
    ACLBusError,
    BackendClosed,
    ConfigurationError,
    ConsumerLimitReached,
    NoStream,
)
from aclbus.subjects import check_filter, covers, overlaps, validate_id

__all__ = ["MemoryServer"]

_log = logging.getLogger("aclbus.backends.memory")

_AMO = DeliveryMode.AT_MOST_ONCE
_NOT_STORED = PublishAck()
_SUBJECT_CACHE_CAP = 10_000


def _positive(owner: str, **values: float | None) -> None:
    for name, value in values.items():
        if value is not None and not value > 0:
            raise ConfigurationError(f"{owner}: {name}={value!r} must be > 0 (or None)")


class MemoryServer:
    """The engine's shared state: streams, consumers, KV buckets and core subscriptions.

    Args:
        clock: Where time comes from (default: `SystemClock`).
        faults: Faults to inject (default: none).
        seed: Seed of the fault injector's draws.

    Attributes:
        clock: The clock every timer of the engine runs on.
        injector: The fault injector; set ``injector.faults`` to change the faults.
        router: The core (``at_most_once``) subscriptions.
    """

    def __init__(
        self, *, clock: Clock | None = None, faults: Faults | None = None, seed: int = 0
    ) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.injector = FaultInjector(faults, seed=seed)
        self.router = CoreRouter(self.clock, self.injector)
        self._streams: dict[str, Stream[Consumer]] = {}
        self._stream_of: dict[str, Stream[Consumer] | None] = {}
        self._inboxes_stored = False  # whether a stream captures reply inboxes (_INBOX.>)
        self._buckets: dict[str, Bucket] = {}
        self._replies: dict[str, asyncio.Future[Reply]] = {}
        self._requested: dict[str, str] = {}  # reply inbox -> the request's subject
        self._inbox_prefix = f"_INBOX.{uuid.uuid4().hex[:22]}."
        self._inbox_ids = itertools.count(1)
        self._ephemeral_ids = itertools.count(1)
        self.closed = False

    # -- provisioning ----------------------------------------------------------------------

    def provision(self, spec: StreamSpec | KVSpec) -> None:
        """Create a stream or bucket, or update it to ``spec`` (its data is kept).

        Raises:
            ConfigurationError: A bad name, subject or limit, or subjects that overlap
                another stream's (as JetStream refuses them).
        """
        if isinstance(spec, StreamSpec):
            self._provision_stream(spec)
        elif isinstance(spec, KVSpec):
            self._provision_bucket(spec)
        else:
            raise ConfigurationError(
                f"cannot provision {spec!r}: expected a StreamSpec or a KVSpec"
            )

    def _provision_stream(self, spec: StreamSpec) -> None:
        name = validate_id(spec.name, "stream name")
        if isinstance(spec.subjects, str) or not spec.subjects:
            raise ConfigurationError(
                f"stream {name!r}: subjects={spec.subjects!r} must be a non-empty tuple"
            )
        for subject in spec.subjects:
            check_filter(subject, "stream subject")
        _positive(
            f"stream {name!r}",
            max_age=spec.max_age,
            max_bytes=spec.max_bytes,
            max_msgs=spec.max_msgs,
            max_msg_size=spec.max_msg_size,
        )
        if spec.duplicate_window < 0:
            raise ConfigurationError(
                f"stream {name!r}: duplicate_window={spec.duplicate_window!r} must be >= 0"
            )
        if spec.max_consumers is not None and spec.max_consumers < 1:
            raise ConfigurationError(
                f"stream {name!r}: max_consumers={spec.max_consumers!r} must be >= 1 (or None)"
            )
        if spec.announce is not None:
            check_filter(spec.announce, "announced subjects")
            if not any(covers(subject, spec.announce) for subject in spec.subjects):
                raise ConfigurationError(
                    f"stream {name!r}: announce={spec.announce!r} is not within its subjects "
                    f"{list(spec.subjects)}"
                )
        for other in self._streams.values():
            if other.name == name:
                continue
            for mine in spec.subjects:
                for theirs in other.spec.subjects:
                    if overlaps(mine, theirs):
                        raise ConfigurationError(
                            f"stream {name!r}: subject {mine!r} overlaps {theirs!r} of "
                            f"stream {other.name!r}; a subject is stored by one stream only"
                        )
        existing = self._streams.get(name)
        if existing is None:
            self._streams[name] = Stream(spec, self.clock)
        else:
            existing.update(spec)
        self._stream_of.clear()
        self._inboxes_stored = any(
            overlaps(subject, "_INBOX.>")
            for stream in self._streams.values()
            for subject in stream.spec.subjects
        )

    def _provision_bucket(self, spec: KVSpec) -> None:
        name = validate_id(spec.bucket, "KV bucket")
        _positive(f"KV bucket {name!r}", ttl=spec.ttl)
        if spec.history < 1:
            raise ConfigurationError(f"KV bucket {name!r}: history={spec.history!r} must be >= 1")
        existing = self._buckets.get(name)
        if existing is None:
            self._buckets[name] = Bucket(spec, self.clock)
        else:
            existing.spec = spec

    # -- lookups ---------------------------------------------------------------------------

    def stream(self, name: str) -> Stream[Consumer]:
        """The stream ``name``.

        Raises:
            ConfigurationError: No such stream; the message lists the provisioned ones.
        """
        found = self._streams.get(name)
        if found is None:
            raise ConfigurationError(
                f"no stream {name!r} is provisioned (streams: "
                f"{', '.join(sorted(self._streams)) or 'none'})"
            )
        return found

    def bucket(self, name: str) -> Bucket:
        """The KV bucket ``name``.

        Raises:
            ConfigurationError: No such bucket; the message says how to provision it.
        """
        found = self._buckets.get(name)
        if found is None:
            raise ConfigurationError(
                f"KV bucket {name!r} is not provisioned: provision KVSpec(bucket={name!r}) "
                f"first (buckets: {', '.join(sorted(self._buckets)) or 'none'})"
            )
        return found

    def stream_for(self, subject: str) -> Stream[Consumer] | None:
        """The stream that stores messages published to ``subject``, or None."""
        try:
            return self._stream_of[subject]
        except KeyError:
            pass
        if subject.startswith("_INBOX.") and not self._inboxes_stored:
            # A reply inbox is used once: remembering it would only crowd the streams' own
            # subjects out of the table (it would fill and start again every few thousand).
            return None
        found = next((s for s in self._streams.values() if s.captures(subject)), None)
        if len(self._stream_of) >= _SUBJECT_CACHE_CAP:
            self._stream_of.clear()
        self._stream_of[subject] = found
        return found

    def _stream_for_filter(self, pattern: str) -> Stream[Consumer] | None:
        streams = list(self._streams.values())
        for stream in streams:
            if any(covers(s, pattern) for s in stream.spec.subjects):
                return stream
        for stream in streams:
            if any(overlaps(s, pattern) for s in stream.spec.subjects):
                return stream
        return None

    # -- messages --------------------------------------------------------------------------

    def publish(
        self,
        subject: str,
        headers: Mapping[str, str],
        body: bytes,
        size: int,
        *,
        mode: DeliveryMode,
        msg_id: str | None,
        ttl: float | None,
        reply: str | None,
    ) -> PublishAck:
        """Route (``at_most_once``) or store (``at_least_once``) one checked message.

        Raises:
            NoStream: ``at_least_once`` and no stream captures ``subject``.
        """
        if mode == _AMO:
            if self._replies:
                waiter = self._replies.pop(subject, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(Reply(subject, headers, body))
            self.router.route(subject, headers, body, reply)
            stream = self.stream_for(subject)
            if stream is not None:
                # As JetStream does: a stream stores every message on its subjects, those
                # published without asking for an ack included (and nobody hears of a refusal).
                with contextlib.suppress(ACLBusError):
                    stream.store(subject, headers, body, size, msg_id=None, ttl=None)
            return _NOT_STORED
        stream = self.stream_for(subject)
        if stream is None:
            raise NoStream(subject)
        # A JetStream message has no reply subject of its own (it carries the ack subject).
        return stream.store(subject, headers, body, size, msg_id=msg_id, ttl=ttl)

    def new_inbox(self) -> str:
        """A fresh reply subject: ``_INBOX.<id>.<n>``."""
        return f"{self._inbox_prefix}{next(self._inbox_ids)}"

    def expect_reply(self, inbox: str, waiter: asyncio.Future[Reply], subject: str = "") -> None:
        """Resolve ``waiter`` with the first message published to ``inbox``.

        Args:
            inbox: The reply subject.
            waiter: What the reply resolves.
            subject: The request's subject: who may answer under a policy's
                ``allow_responses`` (`request_subject`).
        """
        self._replies[inbox] = waiter
        self._requested[inbox] = subject

    def request_subject(self, inbox: str) -> str | None:
        """The subject of the request still waiting for its reply on ``inbox``, or None."""
        return self._requested.get(inbox)

    def forget_reply(self, inbox: str) -> None:
        """Stop waiting for a reply on ``inbox``."""
        self._replies.pop(inbox, None)
        self._requested.pop(inbox, None)

    def advise(self, subject: str, make_body: Callable[[], bytes]) -> None:
        """Publish an advisory ``at_most_once`` if anyone listens (its body is made only then)."""
        if self.router.has_interest(subject):
            self.router.route(subject, {}, make_body(), None)

    # -- consumers -------------------------------------------------------------------------

    def consumer_for(self, spec: SubscriptionSpec) -> Consumer:
        """The consumer an ``at_least_once`` subscription binds to, made if needed.

        ``durable`` names a consumer that outlives its subscriptions; otherwise ``queue``
        names one shared by the group while any member is bound; otherwise each
        subscription gets a consumer of its own.

        Raises:
            NoStream: No stream stores subjects matching ``spec.subject``.
            ConfigurationError: The named consumer exists with another filter subject.
        """
        stream = self._stream_for_filter(spec.subject)
        if stream is None:
            raise NoStream(spec.subject)
        if spec.durable is not None:
            name, durable = spec.durable, True
        elif spec.queue is not None:
            name, durable = spec.queue, False
        else:
            name, durable = f"ephemeral-{next(self._ephemeral_ids)}", False
        consumer = stream.consumers.get(name)
        if consumer is None:
            limit = stream.spec.max_consumers
            if limit is not None and len(stream.consumers) >= limit:
                raise ConsumerLimitReached(stream.name, limit, spec.subject)
            consumer = Consumer(
                stream,
                name,
                spec,
                durable=durable,
                clock=self.clock,
                injector=self.injector,
                advise=self.advise,
            )
            stream.attach(consumer)
        elif consumer.filter != spec.subject:
            raise ConfigurationError(
                f"consumer {name!r} of stream {stream.name!r} follows {consumer.filter!r}, "
                f"not {spec.subject!r}: use another durable name for another subject"
            )
        elif durable:
            consumer.durable = True
        return consumer

    def wait_for_consumer(
        self, spec: SubscriptionSpec, ready: Callable[[Consumer], None]
    ) -> Callable[[], None] | None:
        """Put off making the consumer of a lazy subscription until its subject has a message.

        Args:
            spec: A lazy, durable ``at_least_once`` subscription.
            ready: Called with the consumer once made (when a matching message is stored).

        Returns:
            A function that stops the wait; None when the consumer must be bound now: it
            exists already, a matching message is stored, or the stream does not announce
            the subject (`StreamSpec.announce`).

        Raises:
            NoStream: No stream stores subjects matching ``spec.subject``.
        """
        stream = self._stream_for_filter(spec.subject)
        if stream is None:
            raise NoStream(spec.subject)
        announce = stream.spec.announce
        if (
            spec.durable is None
            or announce is None
            or not covers(announce, spec.subject)
            or spec.durable in stream.consumers
            or stream.holds(spec.subject, self.clock.now())
        ):
            return None

        def wake() -> bool:
            try:
                consumer = self.consumer_for(spec)
            except ConsumerLimitReached as exc:
                # Nobody to raise it to: the message waits, and the next one tries again.
                _log.error("lazy subscription to %r: %s", spec.subject, exc)
                return False
            ready(consumer)
            return True

        return stream.wait(spec.subject, wake)

    def stream_info(self, name: str) -> StreamInfo:
        """The state of stream ``name`` (see `StreamInfo`)."""
        return self.stream(name).info()

    def consumer_info(self, stream: str, consumer: str) -> ConsumerInfo:
        """The state of consumer ``consumer`` of stream ``stream`` (see `ConsumerInfo`).

        Raises:
            ConfigurationError: No such stream or consumer.
        """
        owner = self.stream(stream)
        found = owner.consumers.get(consumer)
        if found is None:
            raise ConfigurationError(
                f"stream {stream!r} has no consumer {consumer!r} (consumers: "
                f"{', '.join(sorted(owner.consumers)) or 'none'})"
            )
        return found.info()

    # -- life ------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Facts about streams, consumers, buckets and faults (JSON-friendly)."""
        streams: dict[str, Any] = {}
        for stream in self._streams.values():
            info = stream.info()
            consumers = {}
            for consumer in stream.consumers.values():
                c = consumer.info()
                consumers[c.name] = {
                    "durable": c.durable,
                    "filter_subject": c.filter_subject,
                    "num_pending": c.num_pending,
                    "num_ack_pending": c.num_ack_pending,
                    "subscriptions": c.subscriptions,
                }
            streams[info.name] = {
                "subjects": list(info.subjects),
                "messages": info.messages,
                "bytes": info.bytes,
                "first_seq": info.first_seq,
                "last_seq": info.last_seq,
                "consumers": consumers,
                "max_consumers": stream.spec.max_consumers,
            }
        return {
            "clock": type(self.clock).__name__,
            "streams": streams,
            "kv": {name: b.describe() for name, b in self._buckets.items()},
            "core_subscriptions": self.router.subscriptions,
            "faults": {
                "enabled": self.injector.active,
                "seed": self.injector.seed,
                "injected": dict(self.injector.counts),
            },
        }

    def check_open(self) -> None:
        """Raise `BackendClosed` if the server was shut down."""
        if self.closed:
            raise BackendClosed("the memory server was shut down")

    def shutdown(self) -> None:
        """Stop every timer and end every watch; the server cannot be used afterwards."""
        self.closed = True
        for stream in self._streams.values():
            for consumer in stream.consumers.values():
                consumer.suspend()
        for bucket in self._buckets.values():
            bucket.close_watches()
