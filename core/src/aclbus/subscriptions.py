"""The subscriptions an agent makes, one spec per kind, and how many consumers they take.

`aclbus.Agent` subscribes with these when it starts, joins a group or subscribes to a topic;
``aclbus doctor`` counts what one more agent costs with `consumers_per_agent`.
"""

from __future__ import annotations

from dataclasses import replace

from aclbus.backend import DeliveryMode, SubscriptionSpec
from aclbus.settings import Settings
from aclbus.subjects import Subjects, TrafficClass

__all__ = ["agent_specs", "consumers_per_agent", "group_spec", "topic_durable", "topic_spec"]


def agent_specs(
    settings: Settings, subjects: Subjects, agent_id: str, *, durable: bool
) -> list[SubscriptionSpec]:
    """What a started agent listens on: its priority lane, inbox, requests and broadcasts.

    Args:
        settings: The bus' settings.
        subjects: The bus' subjects.
        agent_id: The agent.
        durable: Whether the backend has durable consumers.
    """
    s = settings
    inbox_spec = SubscriptionSpec(
        subject=subjects.inbox(agent_id),
        mode=DeliveryMode.AT_LEAST_ONCE,
        durable=subjects.durable("agent", agent_id) if durable else None,
        queue=subjects.durable("agent", agent_id),
        ack_wait=s.ack_wait,
        max_deliver=s.max_deliver,
        concurrency=s.handler_concurrency,
    )
    # The priority lane first, so that urgent messages waiting in it are not overtaken by
    # the first of a backlog of ordinary ones. It is lazy: most agents never get an
    # urgent message, and a consumer each would halve how many agents a stream holds.
    lane = subjects.durable("prio", agent_id)
    specs = [
        replace(
            inbox_spec,
            subject=subjects.priority_inbox(agent_id),
            durable=lane if durable else None,
            queue=lane,
            lazy=True,
        ),
        inbox_spec,
        SubscriptionSpec(
            subject=subjects.rpc(agent_id),
            mode=DeliveryMode.AT_MOST_ONCE,
            queue=subjects.durable("rpc", agent_id),
            concurrency=s.handler_concurrency,
        ),
    ]
    persistent_broadcast = s.broadcast_mode is DeliveryMode.AT_LEAST_ONCE
    specs.append(
        SubscriptionSpec(
            subject=subjects.broadcast,
            mode=s.broadcast_mode,
            durable=(
                subjects.durable("broadcast", agent_id)
                if persistent_broadcast and durable
                else None
            ),
            queue=subjects.durable("broadcast", agent_id),
            deliver="new",
            ack_wait=s.ack_wait,
            max_deliver=s.max_deliver,
            concurrency=s.handler_concurrency,
        )
    )
    return specs


def group_spec(
    settings: Settings, subjects: Subjects, agent_id: str, group: str, *, durable: bool
) -> SubscriptionSpec:
    """The subscription of an agent to a group it joined: one durable consumer per member.

    Args:
        settings: The bus' settings.
        subjects: The bus' subjects.
        agent_id: The agent.
        group: The group.
        durable: Whether the backend has durable consumers.
    """
    s = settings
    name = subjects.durable("group", group, agent_id)
    return SubscriptionSpec(
        subject=subjects.group(group),
        mode=DeliveryMode.AT_LEAST_ONCE,
        durable=name if durable else None,
        queue=name,
        deliver="new",
        ack_wait=s.ack_wait,
        max_deliver=s.max_deliver,
        concurrency=s.handler_concurrency,
    )


def topic_durable(subjects: Subjects, agent_id: str, pattern: str) -> str:
    """An agent's consumer name for a topic pattern (`Subjects.topic_durable`)."""
    return subjects.topic_durable(agent_id, pattern)


def topic_spec(
    settings: Settings,
    subjects: Subjects,
    agent_id: str,
    pattern: str,
    mode: DeliveryMode,
    *,
    durable: bool,
) -> SubscriptionSpec:
    """The subscription of an agent to a topic pattern, stored (a consumer) or live.

    Args:
        settings: The bus' settings.
        subjects: The bus' subjects.
        agent_id: The agent.
        pattern: The topic pattern.
        mode: ``at_least_once`` reads the topic stream; ``at_most_once`` only what comes live.
        durable: Whether the backend has durable consumers.
    """
    s = settings
    subject = subjects.topic(pattern, pattern=True)
    name = topic_durable(subjects, agent_id, pattern)
    if mode is DeliveryMode.AT_MOST_ONCE:
        return SubscriptionSpec(
            subject=subject,
            mode=DeliveryMode.AT_MOST_ONCE,
            queue=name,
            concurrency=s.handler_concurrency,
        )
    return SubscriptionSpec(
        subject=subject,
        mode=DeliveryMode.AT_LEAST_ONCE,
        durable=name if durable else None,
        queue=name,
        deliver="new",
        ack_wait=s.ack_wait,
        max_deliver=s.max_deliver,
        concurrency=s.handler_concurrency,
    )


def consumers_per_agent(settings: Settings) -> dict[TrafficClass, int]:
    """The consumers one started agent takes on each stream of a persistent backend.

    As `Agent.start` subscribes: a durable inbox consumer, and one for broadcasts when they
    are stored. Not counted, because they depend on what the agent does: its priority lane
    (one more on the inbox stream, made when its first urgent message comes), each group
    joined and each durable topic subscription (one on that stream).

    Args:
        settings: The bus' settings.
    """
    stored_broadcasts = settings.broadcast_mode is DeliveryMode.AT_LEAST_ONCE
    return {
        TrafficClass.INBOX: 1,
        TrafficClass.BROADCAST: 1 if stored_broadcasts else 0,
        TrafficClass.GROUP: 0,
        TrafficClass.TOPIC: 0,
        TrafficClass.DLQ: 0,
    }
