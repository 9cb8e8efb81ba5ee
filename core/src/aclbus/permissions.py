"""Subject permissions with the semantics of nats-server: what one connection may do.

A connection's `Permissions` are two `SubjectRules` (publish and subscribe, each an allow
and a deny list of subject patterns) and whether it may answer the requests it receives
(`ResponsePermission`, nats-server's ``allow_responses``). The rules are the server's:

* an empty allow list allows everything; otherwise a subject must match one allow pattern;
* a deny pattern that matches wins over any allow;
* a subscription with wildcards is allowed when an allow pattern covers it, and refused
  when a deny pattern covers it (nats-server also filters, at delivery, messages on denied
  subjects out of a wildcard subscription that only overlaps a deny pattern: the memory
  backend does not, see docs/security.md).

Backends that enforce a policy themselves (the memory backend) consult these; a server that
enforces them (nats-server) is given the same rules rendered by ``aclbus policy render``. The
JetStream API subjects an operation would send on NATS (`JetStreamApi`) let a backend without
a JetStream API check stream operations by the same rules: creating a consumer is allowed when
publishing to ``$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>`` is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aclbus.errors import PermissionDenied
from aclbus.subjects import covers, subject_matches

__all__ = [
    "ANNOUNCEMENTS",
    "DELIVER_PREFIX",
    "JetStreamApi",
    "Permissions",
    "ResponsePermission",
    "SubjectRules",
]

DELIVER_PREFIX = "_INBOX.aclbus"
"""Where a shared consumer delivers on NATS: ``_INBOX.aclbus.<stream>.<consumer>`` (under
``_INBOX.`` like nats-py's own inboxes), a subscription of its own beside its creation."""
ANNOUNCEMENTS = "_aclbus.stored"
"""Where a stream announces (headers only) the messages it stores for lazy subscriptions: a
message stored on ``S`` is announced on ``_aclbus.stored.S``."""

_VERDICTS_CAP = 10_000


@dataclass(frozen=True, slots=True)
class SubjectRules:
    """An allow and a deny list of subject patterns (``*`` one token, ``>`` the rest).

    Args:
        allow: Patterns allowed; empty: every subject (as in nats-server).
        deny: Patterns refused, whatever ``allow`` says.
    """

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    # Matching a subject against every pattern costs tens of µs with a rendered policy's
    # lists; publishes repeat their subjects, so the verdicts are remembered.
    _verdicts: dict[str, bool] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def permits(self, subject: str) -> bool:
        """Whether a literal subject (a publish) is allowed."""
        verdicts = self._verdicts
        verdict = verdicts.get(subject)
        if verdict is None:
            verdict = not any(subject_matches(p, subject) for p in self.deny) and (
                not self.allow or any(subject_matches(p, subject) for p in self.allow)
            )
            if len(verdicts) >= _VERDICTS_CAP:
                verdicts.clear()  # start again: the subjects in use come back
            verdicts[subject] = verdict
        return verdict

    def permits_filter(self, pattern: str) -> bool:
        """Whether a subscription to ``pattern`` (wildcards allowed) is allowed."""
        if any(covers(p, pattern) for p in self.deny):
            return False
        return not self.allow or any(covers(p, pattern) for p in self.allow)


@dataclass(frozen=True, slots=True)
class ResponsePermission:
    """nats-server's ``allow_responses``: answer the requests received, on their reply subject.

    Args:
        max: Replies allowed per request received.
        expires: Seconds after the request within which the replies may be sent.
    """

    max: int = 1
    expires: float = 120.0


@dataclass(frozen=True, slots=True)
class Permissions:
    """What one connection may publish and subscribe to.

    Args:
        principal: Who the connection is (a policy's user), for messages.
        publish: The publish rules.
        subscribe: The subscribe rules.
        responses: Replies allowed to requests received, beside ``publish``; None: only
            what ``publish`` allows.
        inbox_prefix: The prefix under which the connection makes its own reply inboxes
            (nats-py's ``inbox_prefix``, for PubAcks, request replies, KV watches), and the
            only inboxes ``subscribe`` allows it; None: the client's default (``_INBOX``).
            A prefix per user keeps one user from subscribing to another's inboxes and
            reading its replies.
    """

    principal: str
    publish: SubjectRules = field(default_factory=SubjectRules)
    subscribe: SubjectRules = field(default_factory=SubjectRules)
    responses: ResponsePermission | None = None
    inbox_prefix: str | None = None

    def check_publish(self, subject: str) -> None:
        """Raise `PermissionDenied` unless publishing to ``subject`` is allowed."""
        if not self.publish.permits(subject):
            raise PermissionDenied("publish", subject)

    def check_subscribe(self, pattern: str) -> None:
        """Raise `PermissionDenied` unless subscribing to ``pattern`` is allowed."""
        if not self.subscribe.permits_filter(pattern):
            raise PermissionDenied("subscribe", pattern)

    def check_api(self, subject: str) -> None:
        """Raise `PermissionDenied` unless the JetStream API request on ``subject`` is allowed.

        A publish like any other; the name says why a backend without that API checks it.
        """
        self.check_publish(subject)


@dataclass(frozen=True, slots=True)
class JetStreamApi:
    """The JetStream API subjects of stream operations, as a NATS client sends them.

    Consumers are made with the filter in the subject
    (``$JS.API.CONSUMER.CREATE.<stream>.<consumer>.<filter>``), so that the server's
    permissions can limit a connection to consumers on its own subjects.

    Args:
        prefix: The API prefix (JetStream's default ``$JS.API``).
    """

    prefix: str = "$JS.API"

    def info(self) -> str:
        """The account's JetStream information: ``$JS.API.INFO``."""
        return f"{self.prefix}.INFO"

    def stream(self, action: str, stream: str) -> str:
        """``$JS.API.STREAM.<ACTION>.<stream>``: CREATE, UPDATE, INFO, DELETE, PURGE."""
        return f"{self.prefix}.STREAM.{action}.{stream}"

    def msg_get(self, stream: str) -> str:
        """Reading a stored message by sequence: ``$JS.API.STREAM.MSG.GET.<stream>``."""
        return f"{self.prefix}.STREAM.MSG.GET.{stream}"

    def msg_delete(self, stream: str) -> str:
        """Deleting a stored message: ``$JS.API.STREAM.MSG.DELETE.<stream>``."""
        return f"{self.prefix}.STREAM.MSG.DELETE.{stream}"

    def direct_get(self, stream: str) -> str:
        """A direct read of a stored message: ``$JS.API.DIRECT.GET.<stream>``."""
        return f"{self.prefix}.DIRECT.GET.{stream}"

    def consumer_create(self, stream: str, consumer: str, filter_subject: str) -> str:
        """Making a consumer on ``filter_subject``: the filter is part of the subject."""
        return f"{self.prefix}.CONSUMER.CREATE.{stream}.{consumer}.{filter_subject}"

    def consumer(self, action: str, stream: str, consumer: str) -> str:
        """``$JS.API.CONSUMER.<ACTION>.<stream>.<consumer>``: INFO, DELETE."""
        return f"{self.prefix}.CONSUMER.{action}.{stream}.{consumer}"

    def kv_key(self, bucket: str, key: str) -> str:
        """Where a KV put of ``key`` is published: ``$KV.<bucket>.<key>``."""
        return f"$KV.{bucket}.{key}"

    @staticmethod
    def deliver_subject(stream: str, consumer: str) -> str:
        """Where a shared consumer delivers: ``_INBOX.aclbus.<stream>.<consumer>``."""
        return f"{DELIVER_PREFIX}.{stream}.{consumer}"

    @staticmethod
    def ack(stream: str, consumer: str) -> str:
        """The pattern of a consumer's acknowledgements: ``$JS.ACK.<stream>.<consumer>.>``."""
        return f"$JS.ACK.{stream}.{consumer}.>"
