"""Streams: stored messages with sequence numbers, a dedup window, limits and TTLs.

A stream keeps its messages in a list indexed by sequence (a removed message leaves a hole,
and the front is cut off now and then), so lookup by sequence is O(1). A full stream refuses
new messages (``discard: new``, `StreamFull`) or discards from the front (``discard: old``),
as JetStream does. Expiry (``max_age`` and the
per-message TTL) is checked when a message is about to be delivered and when the stream is
inspected, so an expired message is never delivered and no timer is needed per message.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from aclbus.backend import PublishAck, StreamSpec
from aclbus.backends.memory.filters import FilterIndex
from aclbus.errors import ConfigurationError, MessageTooLarge, StreamFull
from aclbus.subjects import subject_matches

if TYPE_CHECKING:
    from aclbus.backends.memory.clock import Clock

__all__ = ["Stream", "StreamInfo", "StoredMessage"]

DELETED_REASON = "Unacknowledged message was deleted"
"""The ``reason`` of the ``MSG_TERMINATED`` advisory for a pending message that was removed
(nats-server's own wording)."""
_INTEREST_CACHE_CAP = 10_000
# Cut the emptied front of the message list once it is this long and over half of the list.
_COMPACT_AT = 1024


class StoredMessage:
    """One message in a stream.

    Attributes:
        seq: Its sequence in the stream, from 1.
        subject: The subject it was published to.
        headers: Its headers (read-only).
        body: Its body.
        size: Its size on the wire (headers and body), counted against the limits.
        stored: `Clock.now` when it was stored.
        expires: `Clock.now` at which it expires (``max_age`` or its TTL), or infinity.
        ttl: Its own TTL in seconds, or None.
    """

    __slots__ = ("body", "expires", "headers", "seq", "size", "stored", "subject", "ttl")

    def __init__(
        self,
        seq: int,
        subject: str,
        headers: Mapping[str, str],
        body: bytes,
        size: int,
        stored: float,
        expires: float,
        ttl: float | None,
    ) -> None:
        self.seq = seq
        self.subject = subject
        self.headers = headers
        self.body = body
        self.size = size
        self.stored = stored
        self.expires = expires
        self.ttl = ttl


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """The state of a stream, as `MemoryBackend.stream_info` reports it.

    Attributes:
        name: The stream's name.
        subjects: The subjects it captures.
        messages: Messages stored now (expired ones are not counted).
        bytes: Their total size on the wire.
        first_seq: Sequence of the oldest stored message (``last_seq + 1`` when empty).
        last_seq: The last sequence assigned (0 before the first message).
        consumers: Names of its consumers, sorted.
    """

    name: str
    subjects: tuple[str, ...]
    messages: int
    bytes: int
    first_seq: int
    last_seq: int
    consumers: tuple[str, ...]


class StreamConsumer(Protocol):
    """What a stream needs of its consumers (`Consumer` is one): it tells them what changed."""

    @property
    def name(self) -> str:
        """Its name, unique in the stream."""

    @property
    def filter(self) -> str:
        """The subject (pattern) it follows."""

    def notify(self, seq: int) -> None:
        """Message ``seq``, matching the filter, was stored."""

    def discard(self, seq: int, *, reason: str) -> None:
        """Message ``seq`` was removed (a delivery of it waiting for its ack ends)."""

    def discard_through(self, last_seq: int) -> None:
        """The stream was purged up to ``last_seq``."""


C = TypeVar("C", bound=StreamConsumer)


class _Wait:
    """A lazy subscription waiting for a first message (`Stream.wait`)."""

    __slots__ = ("handle", "wake")

    def __init__(self, wake: Callable[[], bool]) -> None:
        self.wake = wake
        self.handle = -1


def _expiry(now: float, max_age: float | None, ttl: float | None) -> float:
    expires = math.inf
    if max_age is not None:
        expires = now + max_age
    if ttl is not None:
        expires = min(expires, now + ttl)
    return expires


class Stream(Generic[C]):
    """A provisioned stream and its consumers (of type ``C``).

    Args:
        spec: Its configuration.
        clock: The engine's clock.
    """

    def __init__(self, spec: StreamSpec, clock: Clock) -> None:
        self.spec = spec
        self.name = spec.name
        self._clock = clock
        # _messages[i] holds sequence _base + i; None is a removed message.
        self._messages: list[StoredMessage | None] = []
        self._base = 1
        self._head = 0
        self.last_seq = 0
        self.count = 0
        self.bytes = 0
        self._dedup: dict[str, tuple[int, float]] = {}
        self._dedup_order: deque[tuple[float, str]] = deque()
        self.consumers: dict[str, C] = {}
        # The consumers by filter (and their handles there, by name), so that a message's
        # consumers are found without a scan of them all: one each per agent on an inbox.
        self._filters: FilterIndex[C] = FilterIndex()
        self._handles: dict[str, int] = {}
        self._interest: dict[str, tuple[C, ...]] = {}
        # Stored messages per subject, so that a lazy subscription asks "anything for me?"
        # without a scan of the stream (one per agent start).
        self._subjects: dict[str, int] = {}
        # Lazy subscriptions waiting for their first message, by filter: their wake returns
        # True once it has made its consumer.
        self._waiting: FilterIndex[_Wait] = FilterIndex()

    # -- configuration ---------------------------------------------------------------------

    def update(self, spec: StreamSpec) -> None:
        """Apply a new configuration; the stored messages are kept, then held to its limits."""
        old, self.spec = self.spec, spec
        if old.max_age != spec.max_age:
            for msg in self._messages[self._head :]:
                if msg is not None:
                    msg.expires = _expiry(msg.stored, spec.max_age, msg.ttl)
        self._enforce_limits()
        self._expire_front(self._clock.now())
        self._compact()

    def captures(self, subject: str) -> bool:
        """Whether a message published to ``subject`` is stored here."""
        return any(subject_matches(p, subject) for p in self.spec.subjects)

    # -- storing ---------------------------------------------------------------------------

    def store(
        self,
        subject: str,
        headers: Mapping[str, str],
        body: bytes,
        size: int,
        *,
        msg_id: str | None = None,
        ttl: float | None = None,
    ) -> PublishAck:
        """Store a message (unless ``msg_id`` is a duplicate) and tell the consumers.

        Raises:
            MessageTooLarge: Over ``max_msg_size``, or over ``max_bytes`` on its own.
            ConfigurationError: A ``ttl`` on a stream without ``allow_msg_ttl``, or not > 0.
        """
        spec = self.spec
        if spec.max_msg_size is not None and size > spec.max_msg_size:
            raise MessageTooLarge(
                size, spec.max_msg_size, f"message on {subject!r} for stream {self.name!r}"
            )
        if spec.max_bytes is not None and size > spec.max_bytes:
            raise MessageTooLarge(
                size, spec.max_bytes, f"message on {subject!r} (stream {self.name!r} max_bytes)"
            )
        if ttl is not None:
            if not spec.allow_msg_ttl:
                raise ConfigurationError(
                    f"stream {self.name!r} does not allow per-message TTL (ttl={ttl!r}); "
                    "provision it with allow_msg_ttl=True"
                )
            if not ttl > 0:
                raise ConfigurationError(f"message TTL must be > 0 seconds, got {ttl!r}")
        now = self._clock.now()
        window = spec.duplicate_window
        if msg_id is not None and window > 0:
            self._prune_dedup(now)
            seen = self._dedup.get(msg_id)
            if seen is not None:
                return PublishAck(self.name, seen[0], duplicate=True)
        if spec.discard == "new" and (
            (spec.max_msgs is not None and self.count + 1 > spec.max_msgs)
            or (spec.max_bytes is not None and self.bytes + size > spec.max_bytes)
        ):
            if spec.max_age is not None:
                self._expire_front(now)  # what has expired makes room first
            if (spec.max_msgs is not None and self.count + 1 > spec.max_msgs) or (
                spec.max_bytes is not None and self.bytes + size > spec.max_bytes
            ):
                raise StreamFull(
                    subject,
                    f"stream {self.name!r} holds {self.count} messages, {self.bytes} bytes "
                    f"(max_msgs {spec.max_msgs}, max_bytes {spec.max_bytes}, discard new)",
                )
        seq = self.last_seq + 1
        self.last_seq = seq
        self._messages.append(
            StoredMessage(
                seq, subject, headers, body, size, now, _expiry(now, spec.max_age, ttl), ttl
            )
        )
        self.count += 1
        self.bytes += size
        self._subjects[subject] = self._subjects.get(subject, 0) + 1
        if msg_id is not None and window > 0:
            self._dedup[msg_id] = (seq, now + window)
            self._dedup_order.append((now + window, msg_id))
        if (spec.max_msgs is not None and self.count > spec.max_msgs) or (
            spec.max_bytes is not None and self.bytes > spec.max_bytes
        ):
            self._enforce_limits()
        if spec.max_age is not None:
            self._expire_front(now)
        if self._head >= _COMPACT_AT:
            self._compact()
        consumers = self._interest.get(subject)
        if consumers is None:
            consumers = self._interested(subject)
        for consumer in consumers:
            consumer.notify(seq)
        if self._waiting:
            self._wake(subject)
        return PublishAck(self.name, seq)

    def _prune_dedup(self, now: float) -> None:
        order, dedup = self._dedup_order, self._dedup
        # The window is half-open: a retry at exactly stored + window is a new message.
        while order and order[0][0] <= now:
            expires, msg_id = order.popleft()
            seen = dedup.get(msg_id)
            if seen is not None and seen[1] == expires:
                del dedup[msg_id]

    # -- reading and removing --------------------------------------------------------------

    def get(self, seq: int, now: float) -> StoredMessage | None:
        """The message with sequence ``seq``, or None if removed or expired (then removed)."""
        index = seq - self._base
        if index < self._head or index >= len(self._messages):
            return None
        msg = self._messages[index]
        if msg is not None and msg.expires <= now:
            self._remove_at(index)
            return None
        return msg

    def seqs_matching(self, pattern: str, now: float) -> deque[int]:
        """The sequences of the live messages whose subject matches ``pattern``, in order."""
        matches: dict[str, bool] = {}
        found: deque[int] = deque()
        for msg in self._messages[self._head :]:
            if msg is None or msg.expires <= now:
                continue
            hit = matches.get(msg.subject)
            if hit is None:
                hit = matches[msg.subject] = subject_matches(pattern, msg.subject)
            if hit:
                found.append(msg.seq)
        return found

    def read(self, start: int, pattern: str | None, limit: int, now: float) -> list[StoredMessage]:
        """Up to ``limit`` live messages from sequence ``start`` on whose subject matches.

        Expired messages met on the way are removed, not returned.

        Args:
            start: The first sequence to consider.
            pattern: A subject filter (wildcards allowed), or None for every message.
            limit: At most this many messages.
            now: `Clock.now`.
        """
        found: list[StoredMessage] = []
        messages = self._messages
        index = max(start - self._base, self._head)
        matches: dict[str, bool] = {}
        while index < len(messages) and len(found) < limit:
            msg = messages[index]
            if msg is not None:
                if msg.expires <= now:
                    self._remove_at(index)
                elif pattern is None:
                    found.append(msg)
                else:
                    hit = matches.get(msg.subject)
                    if hit is None:
                        hit = matches[msg.subject] = subject_matches(pattern, msg.subject)
                    if hit:
                        found.append(msg)
            index += 1
        return found

    def delete(self, seq: int, now: float) -> bool:
        """Remove the message with sequence ``seq``; False if it is not stored (or expired).

        A consumer that delivered it and waits for its ack forgets it with a
        ``MSG_TERMINATED`` advisory, as JetStream does; one that has not delivered it yet
        skips it.
        """
        if self.get(seq, now) is None:
            return False
        self._remove_at(seq - self._base)
        for consumer in list(self.consumers.values()):
            consumer.discard(seq, reason=DELETED_REASON)
        self._compact()
        return True

    def purge(self, pattern: str | None, now: float) -> int:
        """Remove every live message (whose subject matches ``pattern``); return how many.

        A full purge makes the consumers forget their deliveries in flight silently; a purge
        by subject terminates each one it removes, like `delete` (both as JetStream does).
        """
        messages = self._messages
        purged = 0
        removed: list[int] = []
        matches: dict[str, bool] = {}
        for index in range(self._head, len(messages)):
            msg = messages[index]
            if msg is None:
                continue
            if pattern is not None:
                hit = matches.get(msg.subject)
                if hit is None:
                    hit = matches[msg.subject] = subject_matches(pattern, msg.subject)
                if not hit:
                    continue
            if msg.expires > now:  # an expired one is removed but not counted
                purged += 1
                removed.append(msg.seq)
            self._remove_at(index)
        if pattern is None:
            for consumer in list(self.consumers.values()):
                consumer.discard_through(self.last_seq)
        else:
            for consumer in list(self.consumers.values()):
                for seq in removed:
                    consumer.discard(seq, reason=DELETED_REASON)
        self._compact()
        return purged

    def holds(self, pattern: str, now: float) -> bool:
        """Whether a live message whose subject matches ``pattern`` is stored."""
        if "*" in pattern or ">" in pattern:
            if not any(subject_matches(pattern, subject) for subject in self._subjects):
                return False
        elif pattern not in self._subjects:
            return False
        return bool(self.read(1, pattern, 1, now))

    def count_live(self, seqs: deque[int], now: float) -> int:
        """How many of ``seqs`` are still stored and unexpired."""
        return sum(1 for seq in seqs if self.get(seq, now) is not None)

    def purge_expired(self, now: float) -> None:
        """Remove every expired message (a scan: for inspection, not the hot path)."""
        messages = self._messages
        for index in range(self._head, len(messages)):
            msg = messages[index]
            if msg is not None and msg.expires <= now:
                self._remove_at(index)
        self._compact()

    def _remove_at(self, index: int) -> None:
        msg = self._messages[index]
        if msg is None:
            return
        self._messages[index] = None
        self.count -= 1
        self.bytes -= msg.size
        left = self._subjects[msg.subject] - 1
        if left:
            self._subjects[msg.subject] = left
        else:
            del self._subjects[msg.subject]
        if index == self._head:
            self._advance_head()

    def _advance_head(self) -> None:
        messages = self._messages
        head = self._head
        while head < len(messages) and messages[head] is None:
            head += 1
        self._head = head

    def _compact(self) -> None:
        # Only between scans: cutting the front shifts every index.
        head = self._head
        if head >= _COMPACT_AT and head * 2 >= len(self._messages):
            del self._messages[:head]
            self._base += head
            self._head = 0

    def _enforce_limits(self) -> None:
        spec = self.spec
        while self.count and (
            (spec.max_msgs is not None and self.count > spec.max_msgs)
            or (spec.max_bytes is not None and self.bytes > spec.max_bytes)
        ):
            self._remove_at(self._head)

    def _expire_front(self, now: float) -> None:
        messages = self._messages
        while self._head < len(messages):
            msg = messages[self._head]
            if msg is None or msg.expires > now:
                return
            self._remove_at(self._head)

    # -- consumers -------------------------------------------------------------------------

    def attach(self, consumer: C) -> None:
        """Add a consumer; new messages matching its filter are announced to it."""
        name = consumer.name
        if name in self._handles:
            self._filters.remove(self._handles[name])
        self.consumers[name] = consumer
        self._handles[name] = self._filters.add(consumer.filter, consumer)
        self._interest.clear()

    def detach(self, consumer: C) -> None:
        """Remove a consumer."""
        if self.consumers.get(consumer.name) is consumer:
            del self.consumers[consumer.name]
            self._filters.remove(self._handles.pop(consumer.name))
            self._interest.clear()

    def wait(self, pattern: str, wake: Callable[[], bool]) -> Callable[[], None]:
        """Call ``wake`` when a message matching ``pattern`` is stored, until it returns True.

        Returns:
            A function that stops the wait.
        """
        entry = _Wait(wake)
        entry.handle = self._waiting.add(pattern, entry)

        def cancel() -> None:
            self._waiting.remove(entry.handle)

        return cancel

    def _wake(self, subject: str) -> None:
        for entry in self._waiting.matching(subject):
            if entry.wake():
                self._waiting.remove(entry.handle)

    def _interested(self, subject: str) -> tuple[C, ...]:
        found = tuple(self._filters.matching(subject))
        if len(self._interest) >= _INTEREST_CACHE_CAP:
            self._interest.clear()
        self._interest[subject] = found
        return found

    # -- inspection ------------------------------------------------------------------------

    def info(self) -> StreamInfo:
        """The stream's state now, after removing what has expired."""
        self.purge_expired(self._clock.now())
        first = self._base + self._head if self.count else self.last_seq + 1
        return StreamInfo(
            name=self.name,
            subjects=tuple(self.spec.subjects),
            messages=self.count,
            bytes=self.bytes,
            first_seq=first,
            last_seq=self.last_seq,
            consumers=tuple(sorted(self.consumers)),
        )
