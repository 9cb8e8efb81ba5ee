"""Names of subjects, streams and durable consumers, all derived from validated ids.

Every subject aclbus uses comes from this module, so the mapping documented in
``docs/wire-format.md`` has one source. Ids (agents, groups, topic tokens, the prefix) are
1 to 128 ASCII letters, digits, ``_`` or ``-``: safe as NATS subject tokens, JetStream consumer
names, Kafka topic parts and KV keys alike.

It also holds the NATS rules for any subject, aclbus' or not, as every backend checks them
(`check_subject`, `check_filter`) and how two patterns relate (`covers`, `overlaps`): tokens
are separated by ``.``, none is empty and none holds whitespace; a filter may use ``*`` for one
token and ``>`` (last) for one or more; a publish subject has no wildcard.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum

from aclbus.errors import InvalidIdentifier

__all__ = [
    "MAX_ID_LENGTH",
    "Subjects",
    "TrafficClass",
    "check_filter",
    "check_subject",
    "covers",
    "overlaps",
    "subject_matches",
    "validate_id",
    "validate_topic",
]

MAX_ID_LENGTH = 128
_ID = re.compile(r"[A-Za-z0-9_-]+")
# Nearly every id on the hot path is one seen before: remember the good ones.
_known_ids: set[str] = set()
_known_topics: set[str] = set()
_KNOWN_IDS_CAP = 100_000
# Likewise for subjects and filters checked by the NATS rules; once full, these stop learning.
_known_subjects: set[str] = set()
_known_filters: set[str] = set()
_KNOWN_SUBJECTS_CAP = 100_000
# A subject with nothing `_subject_problem` could refuse: tokens of anything but whitespace,
# dots and wildcard characters (\s is what str.isspace is true for).
_PLAIN_SUBJECT = re.compile(r"[^\s.*>]+(?:\.[^\s.*>]+)*")


def _reason(value: str) -> str:
    if not value:
        return "it is empty"
    if len(value) > MAX_ID_LENGTH:
        return f"it is {len(value)} characters long, over {MAX_ID_LENGTH}"
    bad = next(ch for ch in value if not _ID.fullmatch(ch))
    if bad in ".*>":
        what = f"{bad!r} is a subject separator or wildcard"
    elif bad.isspace():
        what = "whitespace is not allowed"
    elif not bad.isprintable() or ord(bad) > 127:
        what = f"character {bad!r} (U+{ord(bad):04X}) is not plain ASCII"
    else:
        what = f"character {bad!r} is not allowed"
    return f"{what}; use 1-{MAX_ID_LENGTH} ASCII letters, digits, '_' or '-'"


def validate_id(value: object, kind: str = "agent id", *, remember: bool = True) -> str:
    """Return ``value`` if it is a valid id, else raise `InvalidIdentifier` saying why.

    Args:
        value: The candidate id.
        kind: What the id names, for the error message.
        remember: Keep a valid id in the set of known ids, so that checking it again costs
            one lookup. False for ids seen once (a message id): they would only crowd out
            the ones that come back (agents, groups, topics).

    Raises:
        InvalidIdentifier: Not a string, empty, too long, or with a character outside
            ``[A-Za-z0-9_-]``.
    """
    if value.__class__ is str and value in _known_ids:
        return value
    if not isinstance(value, str):
        raise InvalidIdentifier(kind, value, f"expected a string, got {type(value).__name__}")
    if len(value) > MAX_ID_LENGTH or not _ID.fullmatch(value):
        raise InvalidIdentifier(kind, value, _reason(value))
    if remember:
        _remember(_known_ids, value)
    return value


def _remember(known: set[str], value: str) -> None:
    if len(known) >= _KNOWN_IDS_CAP:
        known.clear()  # start again rather than stop learning: the ids in use come back
    known.add(value)


def validate_topic(value: object, *, pattern: bool = False) -> str:
    """Return a dotted topic (``orders.eu.created``) if every token is a valid id.

    Args:
        value: The candidate topic.
        pattern: Allow the wildcards ``*`` (one token) and ``>`` (the rest, last token only),
            as in a subscription.

    Raises:
        InvalidIdentifier: An empty token, a bad character, or a misplaced wildcard.
    """
    if not pattern and value.__class__ is str and value in _known_topics:
        return value
    if not isinstance(value, str) or not value:
        raise InvalidIdentifier("topic", value, "expected a non-empty dotted string")
    tokens = value.split(".")
    for i, token in enumerate(tokens):
        if pattern and token == "*":
            continue
        if pattern and token == ">":
            if i != len(tokens) - 1:
                raise InvalidIdentifier("topic", value, "'>' is only allowed as the last token")
            continue
        try:
            validate_id(token, "topic token")
        except InvalidIdentifier as exc:
            raise InvalidIdentifier("topic", value, f"token {i + 1}: {exc}") from None
    if not pattern:
        _remember(_known_topics, value)
    return value


def subject_matches(pattern: str, subject: str) -> bool:
    """Tell whether a NATS-style subject pattern (``*`` and ``>`` wildcards) matches a subject."""
    if pattern == subject:
        return True
    p_tokens = pattern.split(".")
    s_tokens = subject.split(".")
    for i, p in enumerate(p_tokens):
        if p == ">":
            return len(s_tokens) > i
        if i >= len(s_tokens) or (p != "*" and p != s_tokens[i]):
            return False
    return len(p_tokens) == len(s_tokens)


def _subject_problem(subject: object, *, wildcards: bool) -> str | None:
    if not isinstance(subject, str) or not subject:
        return "expected a non-empty dotted string"
    tokens = subject.split(".")
    last = len(tokens) - 1
    for i, token in enumerate(tokens):
        if not token:
            return f"token {i + 1} is empty"
        if any(ch.isspace() for ch in token):
            return "whitespace is not allowed"
        if token in ("*", ">"):
            if not wildcards:
                return f"wildcard {token!r} is only allowed in a subscription"
            if token == ">" and i != last:
                return "'>' is only allowed as the last token"
    return None


def check_subject(subject: str) -> str:
    """Return ``subject`` if messages can be published to it.

    Raises:
        InvalidIdentifier: Empty, an empty token, whitespace, or a wildcard.
    """
    if subject in _known_subjects:
        return subject
    if subject.__class__ is str and _PLAIN_SUBJECT.fullmatch(subject):
        return subject  # no empty token, whitespace or wildcard (a reply inbox, used once)
    problem = _subject_problem(subject, wildcards=False)
    if problem is not None:
        raise InvalidIdentifier("subject", subject, problem)
    if len(_known_subjects) < _KNOWN_SUBJECTS_CAP:
        _known_subjects.add(subject)
    return subject


def check_filter(pattern: str, kind: str = "subject filter") -> str:
    """Return ``pattern`` if it is a valid subscription subject (wildcards allowed).

    Raises:
        InvalidIdentifier: Empty, an empty token, whitespace, or ``>`` before the end.
    """
    if pattern in _known_filters:
        return pattern
    problem = _subject_problem(pattern, wildcards=True)
    if problem is not None:
        raise InvalidIdentifier(kind, pattern, problem)
    if len(_known_filters) < _KNOWN_SUBJECTS_CAP:
        _known_filters.add(pattern)
    return pattern


def overlaps(a: str, b: str) -> bool:
    """Whether some subject matches both patterns ``a`` and ``b``."""
    at, bt = a.split("."), b.split(".")
    for i in range(max(len(at), len(bt))):
        x = at[i] if i < len(at) else None
        y = bt[i] if i < len(bt) else None
        if x == ">":
            return y is not None
        if y == ">":
            return x is not None
        if x is None or y is None:
            return False
        if x != "*" and y != "*" and x != y:
            return False
    return True


def covers(outer: str, inner: str) -> bool:
    """Whether every subject that matches pattern ``inner`` also matches pattern ``outer``."""
    ot, it = outer.split("."), inner.split(".")
    for i, o in enumerate(ot):
        if o == ">":
            return i < len(it)
        if i >= len(it):
            return False
        x = it[i]
        if x == ">" or (o != "*" and o != x):
            return False
    return len(ot) == len(it)


class TrafficClass(StrEnum):
    """The classes of traffic; on a persistent backend each has a stream of its own."""

    INBOX = "agent"
    BROADCAST = "broadcast"
    GROUP = "group"
    TOPIC = "topic"
    DLQ = "dlq"


@dataclass(frozen=True, slots=True)
class Subjects:
    """Subject and stream names under one prefix (``ACLBUS_SUBJECT_PREFIX``, default ``aclbus``).

    Args:
        prefix: The first token of every subject, and the stem of every stream name, so that
            several deployments can share one server.
    """

    prefix: str = "aclbus"

    def __post_init__(self) -> None:
        validate_id(self.prefix, "subject prefix")

    def inbox(self, agent: str) -> str:
        """The durable inbox of an agent: ``{prefix}.agent.{agent}``."""
        return f"{self.prefix}.agent.{validate_id(agent)}"

    def priority_inbox(self, agent: str) -> str:
        """The priority lane of an agent's inbox: ``{prefix}.agent.{agent}.high``.

        Messages at or above ``ACLBUS_PRIORITY_THRESHOLD`` go here; the agent consumes the lane
        beside its inbox, so they do not wait behind a backlog of ordinary ones.
        """
        return f"{self.prefix}.agent.{validate_id(agent)}.high"

    @property
    def priority_lanes(self) -> str:
        """The pattern of every agent's priority lane: ``{prefix}.agent.*.high``."""
        return f"{self.prefix}.agent.*.high"

    def rpc(self, agent: str) -> str:
        """The request-reply subject of an agent (not persisted): ``{prefix}.rpc.{agent}``."""
        return f"{self.prefix}.rpc.{validate_id(agent)}"

    @property
    def broadcast(self) -> str:
        """The subject every agent listens to: ``{prefix}.broadcast``."""
        return f"{self.prefix}.broadcast"

    def group(self, group: str) -> str:
        """A multicast group: ``{prefix}.group.{group}``."""
        return f"{self.prefix}.group.{validate_id(group, 'group')}"

    def topic(self, topic: str, *, pattern: bool = False) -> str:
        """A topic, or a topic pattern for a subscription: ``{prefix}.topic.{topic}``."""
        return f"{self.prefix}.topic.{validate_topic(topic, pattern=pattern)}"

    def reaches_many(self, subject: str) -> bool:
        """Whether ``subject`` is broadcast, group or topic traffic: one message, many agents.

        An agent may well ignore some of such traffic (it is not answered ``not-understood``),
        and a dead letter of it belongs to the one agent it failed at.
        """
        return subject == self.broadcast or subject.startswith(
            (f"{self.prefix}.group.", f"{self.prefix}.topic.")
        )

    def dlq(self, origin: str) -> str:
        """Where messages that failed on ``origin`` go: ``{prefix}.dlq.{origin}``."""
        return f"{self.prefix}.dlq.{validate_id(origin, 'dead-letter origin')}"

    def stream(self, traffic: TrafficClass) -> str:
        """The stream name of a traffic class: ``{PREFIX}_{TOKEN}``, upper-cased, ``-`` → ``_``.

        ``TOKEN`` is the class's subject token, so the inbox stream is ``ACLBUS_AGENT`` and the
        others ``ACLBUS_BROADCAST``, ``ACLBUS_GROUP``, ``ACLBUS_TOPIC``, ``ACLBUS_DLQ``.
        """
        return f"{self.prefix.upper().replace('-', '_')}_{traffic.value.upper()}"

    def stream_subjects(self, traffic: TrafficClass) -> tuple[str, ...]:
        """The subjects a traffic class's stream captures."""
        if traffic is TrafficClass.BROADCAST:
            return (self.broadcast,)
        if traffic in (TrafficClass.TOPIC, TrafficClass.INBOX):
            return (f"{self.prefix}.{traffic.value}.>",)  # inboxes: with their priority lanes
        return (f"{self.prefix}.{traffic.value}.*",)

    def bucket(self, kind: str, *names: str) -> str:
        """A KV bucket name: ``{prefix}-{kind}-{name}-…``, like ``aclbus-directory``."""
        return "-".join((self.prefix, kind, *(validate_id(n, "bucket name") for n in names)))

    def flow(self, flow_id: str, part: str) -> str:
        """A subject of one flow of chunks (`aclbus.streaming`): ``{prefix}.flow.{id}.{part}``."""
        return (
            f"{self.prefix}.flow.{validate_id(flow_id, 'flow id')}.{validate_id(part, 'flow part')}"
        )

    def durable(self, kind: str, *names: str) -> str:
        """A durable consumer name: ``{prefix}-{kind}-{name}-…`` (no dots, as JetStream needs)."""
        return "-".join((self.prefix, kind, *(validate_id(n, "consumer name") for n in names)))

    def topic_durable(self, agent: str, pattern: str) -> str:
        """The consumer name of an agent's subscription to a topic pattern (a digest of it).

        ``{prefix}-topic-{agent}-{digest}``: the first 16 hex digits of the SHA-256 of the
        pattern, so that a name is short and the same for every instance of the agent.
        """
        digest = hashlib.sha256(pattern.encode()).hexdigest()[:16]
        return self.durable("topic", agent, digest)
