"""What a backend is asked for and answers with, as data.

The streams and buckets it provisions (`StreamSpec`, `KVSpec`), the subscriptions it makes
(`SubscriptionSpec`, `DeliveryMode`), and what it answers: a publish's `PublishAck`, a
request's `Reply`, a `StoredMessage`, a stream's `StreamUsage`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

__all__ = [
    "ConsumerState",
    "DeliveryMode",
    "KVSpec",
    "PublishAck",
    "Reply",
    "StoredMessage",
    "StreamSpec",
    "StreamUsage",
    "SubscriptionSpec",
]


class DeliveryMode(StrEnum):
    """How hard the broker tries to deliver a message."""

    AT_MOST_ONCE = "at_most_once"
    """Fast and not persisted: core NATS; lost if nobody is subscribed at publish time."""
    AT_LEAST_ONCE = "at_least_once"
    """Persisted and acknowledged: JetStream; redelivered until acked, terminated or exhausted."""


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
class ConsumerState:
    """Where a consumer of this connection's subscriptions stands (`Backend.consumer_states`).

    Attributes:
        stream: Its stream.
        consumer: Its name (a durable name, usually an agent's id).
        pending: Matching messages stored and not delivered yet: the backlog.
        ack_pending: Deliveries sent and not acked or terminated yet.
        redelivered: Of those, the ones delivered more than once.
    """

    stream: str
    consumer: str
    pending: int
    ack_pending: int
    redelivered: int


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
