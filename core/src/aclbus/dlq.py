"""The dead-letter queue: messages that will not be handled, kept with the reason why.

A message is dead-lettered when its handler fails for good (no retry policy, a non-retryable
error, or its attempts are spent), when it is malformed, when it expired before a handler saw
it, or when the broker gave up redelivering it (JetStream's ``MAX_DELIVERIES`` advisory: the
process handling it died on every attempt). Each dead letter is the original message, headers
and body exactly as received, stored on ``{prefix}.dlq.{agent}`` in the DLQ stream with
``aclbus-dlq-*`` headers saying what happened. Both ways in (the handler path and the advisory
path) use one deterministic message id per original stream message and agent, so a message
that takes both is stored once, while a broadcast (or group message) that fails at several
agents leaves a dead letter for each of them. Replaying such a dead letter sends it to its
agent's inbox only: the other agents handled it already.

``aclbus dlq ls | show | replay | purge`` works on it from the command line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from aclbus import wire
from aclbus.acl import ACLMessage
from aclbus.backend import Backend, DeliveryMode, PublishAck, Received, StoredMessage
from aclbus.codec import CodecRegistry
from aclbus.errors import ACLBusError, MalformedHeaders
from aclbus.redaction import redact
from aclbus.stats import BusStats
from aclbus.subjects import Subjects, TrafficClass, validate_id
from aclbus.wire import ParsedHeaders

__all__ = ["DLQ_HEADER_PREFIX", "DeadLetter", "DeadLetters", "HasCodecs", "Reason", "redact"]

log = logging.getLogger("aclbus.dlq")

DLQ_HEADER_PREFIX = "aclbus-dlq-"
REPLAY_HEADER = "aclbus-replay-of"
_DEFECT_FIELD = f"{DLQ_HEADER_PREFIX}header-defect-field"
_DEFECT = f"{DLQ_HEADER_PREFIX}header-defect"


class HasCodecs(Protocol):
    """Whatever holds the codecs a dead letter is decoded with: a `aclbus.Bus`."""

    @property
    def codecs(self) -> CodecRegistry:
        """The codecs, by content type."""
        ...


class Reason:
    """The reasons aclbus gives (plugins may give others)."""

    HANDLER_ERROR = "handler-error"
    """The handler raised and no retry policy retries it."""
    NOT_RETRYABLE = "not-retryable"
    """The handler raised an error the retry policy does not retry."""
    EXHAUSTED = "attempts-exhausted"
    """The retry policy's attempts are spent."""
    MAX_DELIVER = "max-deliver"
    """The broker delivered it ``max_deliver`` times without an ack (the handler never
    finished: a crash, a hang)."""
    EXPIRED = "expired"
    """Its TTL ran out before a handler saw it."""
    MALFORMED = "malformed"
    """It is not a valid ACL message (a header or the body is missing, malformed, out of
    range)."""
    MALFORMED_HEADERS = "malformed-headers"
    """Its header block breaks the rules of a block (`aclbus.errors.MalformedHeaders`): a
    header of the envelope given twice (a spoofed ``ce-source``), a name that is not a token.
    Such a dead letter cannot be replayed: its headers cannot be sent again as they came."""
    INVALID_PAYLOAD = "invalid-payload"
    """Its payload does not validate against the model its handler declared."""
    HOP_LIMIT = "hop-limit"
    """It has passed through more agents than ``ACLBUS_MAX_HOPS`` (an agent loop)."""
    BAD_SIGNATURE = "bad-signature"
    """Its signature is missing, wrong or made with a key its sender does not hold, or it is
    outside the replay windows (``aclbus-signing`` in mode ``require``: ``docs/security.md``)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter.

    Attributes:
        sequence: Its sequence in the DLQ stream: the id ``aclbus dlq show`` takes.
        origin: The agent it was delivered to.
        reason: Why it is here (see `Reason`).
        attempts: How many times it was delivered.
        error_type: The exception's type, if one was raised.
        error: The exception's message, secrets masked.
        handler: The handler that failed, if any.
        dead_at: When it was dead-lettered (UTC).
        subject: The subject it was published to.
        stream: The stream it was stored in, if it was.
        stream_sequence: Its sequence there.
        message_id: Its ``ce-id``, if it had one.
        headers: The original headers; for a header block that was malformed, an
            `aclbus.wire.ParsedHeaders` whose ``defect`` says how (the copy kept here cannot
            hold two lines of one name, or a name that was not text).
        body: The original body.
        replay_of: For a replayed message that died again, the dead letter it was replayed from.
    """

    sequence: int
    origin: str
    reason: str
    attempts: int
    error_type: str | None
    error: str | None
    handler: str | None
    dead_at: datetime
    subject: str
    stream: str | None
    stream_sequence: int | None
    message_id: str | None
    headers: Mapping[str, str]
    body: bytes
    replay_of: int | None = None

    def message(self, bus: HasCodecs) -> ACLMessage:
        """The original message, decoded (raises `ACLDecodeError` for a malformed one)."""
        return wire.decode(self.headers, self.body, bus.codecs)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON output; the body as text when it is UTF-8."""
        try:
            body: str = self.body.decode()
        except UnicodeDecodeError:
            body = repr(self.body)
        return {
            "sequence": self.sequence,
            "origin": self.origin,
            "reason": self.reason,
            "attempts": self.attempts,
            "error_type": self.error_type,
            "error": self.error,
            "handler": self.handler,
            "dead_at": self.dead_at.isoformat(),
            "subject": self.subject,
            "stream": self.stream,
            "stream_sequence": self.stream_sequence,
            "message_id": self.message_id,
            "replay_of": self.replay_of,
            "headers": dict(self.headers),
            "body": body,
        }


class DeadLetters:
    """The dead-letter queue of a bus (``bus.dead_letters``).

    Args:
        backend: The bus' backend, where the DLQ stream is.
        subjects: The bus' subjects (the DLQ's stream and subjects).
        stats: The bus' counters (``dead_lettered``).
    """

    def __init__(self, backend: Backend, subjects: Subjects, stats: BusStats) -> None:
        self._backend = backend
        self._subjects = subjects
        self._stats = stats

    @property
    def stream(self) -> str:
        """The DLQ stream's name."""
        return self._subjects.stream(TrafficClass.DLQ)

    async def add(
        self,
        received: Received,
        *,
        origin: str,
        reason: str,
        error: BaseException | None = None,
        handler: str | None = None,
    ) -> PublishAck:
        """Store a delivery in the DLQ.

        The broker's dedup makes this idempotent per original stream message, so the handler
        path and the advisory path may both add the same message.

        Args:
            received: The delivery, as the backend gave it.
            origin: The agent it was for.
            reason: Why (see `Reason`).
            error: The exception that made it fail, if any (its text has secrets masked).
            handler: The name of the handler that failed, if any.
        """
        return await self._store(
            subject=received.subject,
            headers=received.headers,
            body=received.body,
            stream=received.stream,
            sequence=received.sequence,
            attempts=received.attempt,
            origin=origin,
            reason=reason,
            error=error,
            handler=handler,
        )

    async def add_stored(
        self, stored: StoredMessage, *, origin: str, reason: str, attempts: int
    ) -> PublishAck:
        """Store a message read back from its stream (the advisory path) in the DLQ."""
        return await self._store(
            subject=stored.subject,
            headers=stored.headers,
            body=stored.body,
            stream=stored.stream,
            sequence=stored.sequence,
            attempts=attempts,
            origin=origin,
            reason=reason,
            error=None,
            handler=None,
        )

    async def _store(
        self,
        *,
        subject: str,
        headers: Mapping[str, str],
        body: bytes,
        stream: str | None,
        sequence: int | None,
        attempts: int,
        origin: str,
        reason: str,
        error: BaseException | None,
        handler: str | None,
    ) -> PublishAck:
        try:
            origin = validate_id(origin, "dead-letter origin")
        except ACLBusError:
            origin = "unknown"
        out = {
            k: v
            for k, v in headers.items()
            if not k.lower().startswith(("nats-", DLQ_HEADER_PREFIX))
        }
        defect = headers.defect if isinstance(headers, ParsedHeaders) else None
        # A name that is no token (a NUL, a control character: what a hand-written client can
        # put in a block) cannot be sent again by any backend; were it copied, the letter
        # could never be stored and the message would come back forever. It is left out, and
        # the defect kept below says what was wrong.
        for name in [k for k in out if not wire.HEADER_TOKEN.fullmatch(k)]:
            del out[name]
            if defect is None:
                defect = wire.header_name_error(name.encode("unicode_escape").decode("ascii"))
        out.update(
            {
                f"{DLQ_HEADER_PREFIX}reason": redact(reason, 100),
                f"{DLQ_HEADER_PREFIX}origin": origin,
                f"{DLQ_HEADER_PREFIX}attempts": str(attempts),
                f"{DLQ_HEADER_PREFIX}time": datetime.now(UTC).isoformat(),
                f"{DLQ_HEADER_PREFIX}subject": subject,
            }
        )
        if stream is not None and sequence is not None:
            out[f"{DLQ_HEADER_PREFIX}stream"] = stream
            out[f"{DLQ_HEADER_PREFIX}sequence"] = str(sequence)
        if error is not None:
            out[f"{DLQ_HEADER_PREFIX}error-type"] = type(error).__name__
            out[f"{DLQ_HEADER_PREFIX}error"] = redact(str(error))
        if handler:
            out[f"{DLQ_HEADER_PREFIX}handler"] = redact(handler, 200)
        if defect is not None:
            # The copy above cannot hold what was wrong (two lines of one name, a name that
            # was not text): keep it, so that reading the letter back refuses it again.
            out[_DEFECT_FIELD] = redact(defect.field, 100)
            out[_DEFECT] = redact(defect.problem)
        message_id = _header(headers, "ce-id")
        if stream is not None and sequence is not None:
            # Per agent: one broadcast stored once in its stream fails at each agent apart.
            msg_id: str | None = f"dlq-{stream}-{sequence}-{origin}"
        elif message_id is not None:
            msg_id = f"dlq-{origin}-{message_id}"
        else:
            msg_id = None
        ack = await self._backend.publish(
            self._subjects.dlq(origin), out, body, mode=DeliveryMode.AT_LEAST_ONCE, msg_id=msg_id
        )
        if not ack.duplicate:
            self._stats.dead_lettered += 1
            log.warning(
                "dead-lettered message %s for %s: %s%s",
                message_id or f"{stream}#{sequence}",
                origin,
                reason,
                f" ({type(error).__name__})" if error is not None else "",
            )
        return ack

    async def list(
        self, *, origin: str | None = None, start: int = 1, limit: int = 100
    ) -> list[DeadLetter]:
        """Dead letters in the order they came, optionally only those of one agent."""
        subject = self._subjects.dlq(origin) if origin else f"{self._subjects.prefix}.dlq.*"
        stored = await self._backend.read_stream(
            self.stream, subject=subject, start=start, limit=limit
        )
        return [_dead_letter(m) for m in stored]

    async def get(self, sequence: int) -> DeadLetter:
        """The dead letter ``sequence``.

        Raises:
            KeyError: There is none (never was, purged, or aged out).
        """
        stored = await self._backend.get_message(self.stream, sequence)
        if stored is None:
            raise KeyError(f"no dead letter {sequence} in stream {self.stream!r}")
        return _dead_letter(stored)

    async def replay(
        self, sequence: int, *, to: str | None = None, remove: bool = True
    ) -> PublishAck:
        """Publish a dead letter again, as a new message with a new attempt budget.

        A message sent to one agent goes back to the subject it was first published to. A
        broadcast, group or topic message goes to the inbox of the agent it failed at (its
        ``origin``), since the others handled it already. ``to`` sends it to that agent's inbox
        instead. The replayed message carries the header ``aclbus-replay-of: <sequence>``,
        linking it to this dead letter, and a broker dedup key of its own (its original id
        would be taken for a duplicate within the dedup window).

        Args:
            sequence: Which dead letter.
            to: Send it to this agent's inbox instead of where it would go.
            remove: Delete the dead letter once the replay is stored.

        Raises:
            KeyError: No such dead letter.
            MalformedHeaders: Its header block was malformed (reason ``malformed-headers``):
                sent again it would be another message than the one refused, the second
                ``ce-source`` lost, say.
        """
        letter = await self.get(sequence)
        try:
            wire.check_headers(letter.headers)
        except MalformedHeaders as exc:
            raise MalformedHeaders(
                exc.field,
                f"{exc.problem}; dead letter {sequence} is not replayed, since its headers "
                "cannot be sent again as they came: purge it, or send a corrected message",
            ) from None
        # A broadcast, group or topic message goes back to the one agent it failed at.
        if (
            to is None
            and self._subjects.reaches_many(letter.subject)
            and letter.origin != "unknown"
        ):
            to = letter.origin
        # Headers set below replace the original's in any case (a Go client writes
        # Acl-Receiver-Id): two of them would make the replay malformed.
        replaced = {REPLAY_HEADER, "acl-receiver-id"} if to else {REPLAY_HEADER}
        headers = {
            k: v
            for k, v in letter.headers.items()
            if not k.lower().startswith("nats-") and k.lower() not in replaced
        }
        headers[REPLAY_HEADER] = str(sequence)
        subject = self._subjects.inbox(to) if to else letter.subject
        if to:
            headers["acl-receiver-id"] = validate_id(to)
        ack = await self._backend.publish(
            subject,
            headers,
            letter.body,
            mode=DeliveryMode.AT_LEAST_ONCE,
            msg_id=f"replay-{self.stream}-{sequence}",
        )
        if remove:
            await self._backend.delete_message(self.stream, sequence)
        return ack

    async def purge(self, sequence: int | None = None, *, origin: str | None = None) -> int:
        """Delete one dead letter, those of one agent, or all; return how many were deleted."""
        backend = self._backend
        if sequence is not None:
            return int(await backend.delete_message(self.stream, sequence))
        subject = self._subjects.dlq(origin) if origin else None
        return await backend.purge_stream(self.stream, subject=subject)

    async def count(self) -> int:
        """How many dead letters there are (bounded scan)."""
        return len(await self.list(limit=100_000))

    async def handle_advisory(self, body: bytes) -> PublishAck | None:
        """Dead-letter the message a ``MAX_DELIVERIES`` advisory names, if it is this bus'.

        Returns:
            The DLQ's ack, or None when the advisory is not for this bus or the message is
            already gone.
        """
        try:
            advisory = orjson.loads(body)
            stream = str(advisory["stream"])
            consumer = str(advisory["consumer"])
            sequence = int(advisory["stream_seq"])
            deliveries = int(advisory.get("deliveries", 0))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.warning("ignored a malformed MAX_DELIVERIES advisory: %s", exc)
            return None
        prefix = self._subjects.prefix
        mine = {self._subjects.stream(t) for t in TrafficClass} - {self.stream}
        if stream not in mine:
            return None
        stored = await self._backend.get_message(stream, sequence)
        if stored is None:
            log.warning("message %s#%d exhausted its deliveries but is gone", stream, sequence)
            return None
        origin = _origin_of(consumer, prefix, stored.subject)
        return await self.add_stored(
            stored, origin=origin, reason=Reason.MAX_DELIVER, attempts=deliveries
        )


def _origin_of(consumer: str, prefix: str, subject: str) -> str:
    """The agent a durable consumer delivers to, from its name (`Subjects.durable`).

    ``{prefix}-agent-{agent}``, ``-prio-``, ``-broadcast-``; ``{prefix}-group-{group}-{agent}``
    (the group is read from the message's subject, since ids may hold ``-`` too);
    ``{prefix}-topic-{agent}-{digest}``.
    """
    for kind in ("agent", "prio", "broadcast"):
        head = f"{prefix}-{kind}-"
        if consumer.startswith(head):
            return consumer[len(head) :]
    group_subject = f"{prefix}.group."
    if subject.startswith(group_subject):
        head = f"{prefix}-group-{subject[len(group_subject) :]}-"
        if consumer.startswith(head):
            return consumer[len(head) :]
    head = f"{prefix}-topic-"
    if consumer.startswith(head) and re.fullmatch(r".+-[0-9a-f]{16}", consumer[len(head) :]):
        return consumer[len(head) : -17]
    return "unknown"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    for key, val in headers.items():
        if key.lower() == name:
            return val
    return None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _dead_letter(stored: StoredMessage) -> DeadLetter:
    h = {k.lower(): v for k, v in stored.headers.items()}
    original: Mapping[str, str] = {
        k: v
        for k, v in stored.headers.items()
        if not k.lower().startswith((DLQ_HEADER_PREFIX, "nats-"))
    }
    defect = stored.headers.defect if isinstance(stored.headers, ParsedHeaders) else None
    if _DEFECT in h:
        defect = MalformedHeaders(h.get(_DEFECT_FIELD, "headers"), h[_DEFECT])
    if defect is not None:  # (only then: a ParsedHeaders' names are taken as checked)
        original = ParsedHeaders(original)
        original.defect = defect
    when = h.get(f"{DLQ_HEADER_PREFIX}time")
    try:
        dead_at = datetime.fromisoformat(when) if when else stored.time
    except ValueError:
        dead_at = stored.time
    return DeadLetter(
        sequence=stored.sequence,
        origin=h.get(f"{DLQ_HEADER_PREFIX}origin", stored.subject.rsplit(".", 1)[-1]),
        reason=h.get(f"{DLQ_HEADER_PREFIX}reason", "unknown"),
        attempts=_int(h.get(f"{DLQ_HEADER_PREFIX}attempts")) or 0,
        error_type=h.get(f"{DLQ_HEADER_PREFIX}error-type"),
        error=h.get(f"{DLQ_HEADER_PREFIX}error"),
        handler=h.get(f"{DLQ_HEADER_PREFIX}handler"),
        dead_at=dead_at,
        subject=h.get(f"{DLQ_HEADER_PREFIX}subject", stored.subject),
        stream=h.get(f"{DLQ_HEADER_PREFIX}stream"),
        stream_sequence=_int(h.get(f"{DLQ_HEADER_PREFIX}sequence")),
        message_id=_header(original, "ce-id"),
        headers=original,
        body=stored.body,
        replay_of=_int(_header(original, REPLAY_HEADER)),
    )
