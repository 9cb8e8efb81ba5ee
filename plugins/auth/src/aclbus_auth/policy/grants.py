"""From a policy's grants to the subject permissions of each user, in nats-server's terms.

`permissions_for` is the one place that says which subjects and JetStream API requests an
agent's bus needs: its inbox's consumers on their own filters, its request subject, its
dead letters, the bus' buckets, and what its grants add. The server is given them by
``aclbus policy render``; the memory backend is held to the very same `Permissions`.

What an agent's user is never allowed: deleting, changing or purging the bus' streams (an
admin's work), reading the shared traffic streams by sequence (``STREAM.MSG.GET`` or
``DIRECT.GET`` would read other agents' messages), consumers it did not make on filters not
granted, an open ``_INBOX.>`` (replies go through ``allow_responses``), and the
``MAX_DELIVERIES`` advisories (dead-lettering from them reads other agents' messages: a bus of
an admin does it; an agent's bus does not listen).
"""

from __future__ import annotations

from aclbus.permissions import (
    ANNOUNCEMENTS,
    JetStreamApi,
    Permissions,
    ResponsePermission,
    SubjectRules,
)
from aclbus.subjects import Subjects, TrafficClass
from aclbus_auth.policy.model import AgentGrants, DlqAccess, Policy

__all__ = ["SHARED_BUCKETS", "permissions_for"]

SHARED_BUCKETS = ("groups", "directory", "presence")
"""The KV buckets every bus may use: group membership, the directory and presence."""

_API = JetStreamApi()
_TRAFFIC = (TrafficClass.INBOX, TrafficClass.BROADCAST, TrafficClass.GROUP, TrafficClass.TOPIC)


class _Rules:
    """Allow and deny lists being gathered, in order, without repeats."""

    def __init__(self) -> None:
        self.allow: dict[str, None] = {}
        self.deny: dict[str, None] = {}

    def add(self, *subjects: str) -> None:
        self.allow.update(dict.fromkeys(subjects))

    def refuse(self, *subjects: str) -> None:
        self.deny.update(dict.fromkeys(subjects))

    def rules(self) -> SubjectRules:
        return SubjectRules(tuple(self.allow), tuple(self.deny))


def permissions_for(policy: Policy, user: str) -> Permissions:
    """The permissions of ``user``'s connections: what its agents may do, together.

    An admin may do everything. Any other user gets, for each agent it acts as, what every
    agent needs and what that agent's grants add.

    Raises:
        KeyError: No such user.
    """
    principal = policy.users[user]
    if principal.admin:
        everything = SubjectRules(allow=(">",))
        return Permissions(principal=user, publish=everything, subscribe=everything)
    subjects = Subjects(policy.prefix)
    pub, sub = _Rules(), _Rules()
    _common(subjects, pub, sub)
    inbox_prefix = reply_inbox_prefix(user)
    sub.add(f"{inbox_prefix}.>")
    for agent in principal.agents:
        _agent(subjects, agent, policy.agents[agent], pub, sub)
    _refusals(subjects, pub)
    responses = policy.responses
    return Permissions(
        principal=user,
        publish=pub.rules(),
        subscribe=sub.rules(),
        responses=ResponsePermission(max=responses.max, expires=responses.seconds),
        inbox_prefix=inbox_prefix,
    )


def reply_inbox_prefix(user: str) -> str:
    """Where ``user``'s connections make their reply inboxes: ``_INBOX_<user>``.

    One prefix per user, and subscribe permissions for it alone: another user's bus cannot
    subscribe to these inboxes and read the replies and JetStream answers sent to them. A
    client of another language connecting as this user sets the same prefix (nats.go's
    ``CustomInboxPrefix``, nats.js's ``inboxPrefix``).
    """
    return f"_INBOX_{user}"


def _common(subjects: Subjects, pub: _Rules, sub: _Rules) -> None:
    """What any agent's bus needs, whoever it is."""
    pub.add(_API.info(), f"{_API.prefix}.STREAM.NAMES")
    # The bus makes its streams if they are missing, with the deployment's settings; one
    # that exists with those settings is left as it is (an admin provisions them first).
    for traffic in TrafficClass:
        stream = subjects.stream(traffic)
        pub.add(_API.stream("CREATE", stream), _API.stream("INFO", stream))
    for name in SHARED_BUCKETS:
        _bucket(pub, subjects.bucket(name))


def _bucket(pub: _Rules, bucket: str) -> None:
    """Using a KV bucket: its stream, its keys, reads, watches."""
    stream = f"KV_{bucket}"
    pub.add(
        _API.stream("CREATE", stream),
        _API.stream("INFO", stream),
        _API.msg_get(stream),
        _API.direct_get(stream),
        f"{_API.direct_get(stream)}.>",
        f"{_API.prefix}.CONSUMER.CREATE.{stream}",
        f"{_API.prefix}.CONSUMER.CREATE.{stream}.>",
        _API.consumer("INFO", stream, "*"),
        _API.consumer("DELETE", stream, "*"),
        f"$KV.{bucket}.>",
        f"$JS.FC.{stream}.>",
        f"$JS.ACK.{stream}.>",
    )


def _consumer(pub: _Rules, sub: _Rules, stream: str, consumer: str, filter_subject: str) -> None:
    """One consumer of the agent's own: made on its filter, read, deleted, acked, delivered."""
    pub.add(
        _API.consumer_create(stream, consumer, filter_subject),
        _API.consumer("INFO", stream, consumer),
        _API.consumer("DELETE", stream, consumer),
        _API.ack(stream, consumer),
    )
    sub.add(_API.deliver_subject(stream, consumer))


def _inbox(subjects: Subjects, pub: _Rules, sub: _Rules, agent: str) -> None:
    """Consuming ``agent``'s inbox and priority lane, as an instance of it does."""
    inbox = subjects.stream(TrafficClass.INBOX)
    _consumer(pub, sub, inbox, subjects.durable("agent", agent), subjects.inbox(agent))
    lane = subjects.priority_inbox(agent)
    _consumer(pub, sub, inbox, subjects.durable("prio", agent), lane)
    sub.add(f"{ANNOUNCEMENTS}.{lane}")


def _agent(subjects: Subjects, agent: str, grants: AgentGrants, pub: _Rules, sub: _Rules) -> None:
    """What one agent needs and what its grants add."""
    p = subjects.prefix
    # Its own: the inbox, the request subject it answers, broadcasts, its dead letters.
    _inbox(subjects, pub, sub, agent)
    sub.add(subjects.rpc(agent), subjects.broadcast)
    _consumer(
        pub,
        sub,
        subjects.stream(TrafficClass.BROADCAST),
        subjects.durable("broadcast", agent),
        subjects.broadcast,
    )
    pub.add(subjects.dlq(agent))
    for target in grants.send:
        pub.add(f"{p}.agent.{target}", f"{p}.agent.{target}.high")
    for group in grants.groups:
        pub.add(f"{p}.group.{group}")
    for group in grants.join:
        group_stream = subjects.stream(TrafficClass.GROUP)
        if group == "*":
            # Consumer names hold the group (``{p}-group-<group>-<agent>``): no wildcard
            # can keep to this agent's, so any group's consumer is allowed.
            _consumer(pub, sub, group_stream, "*", f"{p}.group.*")
        else:
            consumer = subjects.durable("group", group, agent)
            _consumer(pub, sub, group_stream, consumer, subjects.group(group))
    for topic in grants.publish:
        pub.add(subjects.topic(topic, pattern=True))
    for topic in grants.subscribe:
        subject = subjects.topic(topic, pattern=True)
        sub.add(subject)
        _consumer(
            pub,
            sub,
            subjects.stream(TrafficClass.TOPIC),
            subjects.topic_durable(agent, topic),
            subject,
        )
    if grants.broadcast:
        pub.add(subjects.broadcast)
    for target in grants.request:
        pub.add(f"{p}.rpc.{target}")
    for other in grants.consume:
        if other == "*":
            _consumer(pub, sub, subjects.stream(TrafficClass.INBOX), "*", f"{p}.agent.*")
            _consumer(pub, sub, subjects.stream(TrafficClass.INBOX), "*", f"{p}.agent.*.high")
        else:
            _inbox(subjects, pub, sub, other)
    dlq = subjects.stream(TrafficClass.DLQ)
    if grants.dlq is not DlqAccess.NONE:
        pub.add(_API.msg_get(dlq))
    if grants.dlq is DlqAccess.MANAGE:
        pub.add(_API.msg_delete(dlq), _API.stream("PURGE", dlq))
    for name in grants.shared_maps:
        _bucket(pub, subjects.bucket("shared", name))


def _refusals(subjects: Subjects, pub: _Rules) -> None:
    """Explicit denials: they win over any allow an operator adds to the rendered lists."""
    pub.refuse(
        f"{_API.prefix}.STREAM.DELETE.>",
        f"{_API.prefix}.STREAM.UPDATE.>",
        # made without the filter in the subject, a consumer could read any subject
        f"{_API.prefix}.CONSUMER.DURABLE.CREATE.>",
    )
    for traffic in _TRAFFIC:
        stream = subjects.stream(traffic)
        pub.refuse(_API.msg_get(stream), _API.direct_get(stream), f"{_API.direct_get(stream)}.>")
        pub.refuse(_API.stream("PURGE", stream))
