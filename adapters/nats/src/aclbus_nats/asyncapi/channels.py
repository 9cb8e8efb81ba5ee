"""The channels and operations of a bus' agents, as AsyncAPI 3.0 objects.

Each agent has its inbox, the inbox's priority lane, its request subject, and subscriptions
to broadcasts, to its groups and to its topic patterns; groups and topic patterns are channels
shared by their members.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from faststream.specification.asyncapi.v3_0_0.schema import (
    ApplicationSchema,
    Channel,
    Components,
    Message,
    Operation,
)

from aclbus.backend import DeliveryMode
from aclbus.subjects import TrafficClass, overlaps
from aclbus_nats.asyncapi.messages import (
    add_handler_messages,
    add_payload_schemas,
    message_object,
    ref,
)
from aclbus_nats.asyncapi.schema import (
    ACL_HEADERS_SCHEMA,
    ANY_JSON_SCHEMA,
    ANY_MESSAGE_KEY,
    HEADERS_KEY,
    PAYLOAD_KEY,
)

if TYPE_CHECKING:
    from aclbus import Bus

__all__ = ["add_agents"]


def add_agents(schema: ApplicationSchema, bus: Bus) -> None:
    """Add the channels, operations and messages of ``bus``' agents to ``schema``."""
    subjects, settings = bus.subjects, bus.settings
    components = schema.components = schema.components or Components()
    schemas = components.schemas = dict(components.schemas or {})
    messages = components.messages = dict(components.messages or {})
    schemas[HEADERS_KEY] = copy.deepcopy(ACL_HEADERS_SCHEMA)
    schemas[PAYLOAD_KEY] = dict(ANY_JSON_SCHEMA)
    messages[ANY_MESSAGE_KEY] = Message.model_validate(
        message_object(
            title="ACL message",
            summary="Any aclbus message.",
            headers=ref("components", "schemas", HEADERS_KEY),
        )
    )
    payloads = add_payload_schemas(bus.agents.values(), schemas)
    servers = [ref("servers", name) for name in schema.servers or {}] or None

    def channel(key: str, description: str, message_keys: Iterable[str], **more: Any) -> None:
        schema.channels[key] = Channel.model_validate(
            {
                "address": key,
                "description": description,
                "servers": servers,
                "messages": {k: ref("components", "messages", k) for k in message_keys},
                **more,
            }
        )

    def receive(key: str, channel_key: str, message_keys: list[str], **more: Any) -> None:
        schema.operations[key] = Operation.model_validate(
            {
                "action": "receive",
                "channel": ref("channels", channel_key),
                "messages": [ref("channels", channel_key, "messages", k) for k in message_keys],
                **more,
            }
        )

    broadcast = subjects.broadcast
    reply = f"{subjects.prefix}.rpc-reply"
    persistent_broadcast = settings.broadcast_mode is DeliveryMode.AT_LEAST_ONCE
    inbox_stream = subjects.stream(TrafficClass.INBOX)
    broadcast_stream = subjects.stream(TrafficClass.BROADCAST)
    group_stream = subjects.stream(TrafficClass.GROUP)
    topic_stream = subjects.stream(TrafficClass.TOPIC)
    broadcast_messages = [ANY_MESSAGE_KEY]
    # Groups and topic patterns are shared by their members: one channel each, with the
    # messages of every agent on it.
    group_messages: dict[str, list[str]] = {}
    topic_messages: dict[str, list[str]] = {}

    for agent in bus.agents.values():
        routes = add_handler_messages(agent, messages, payloads)
        # A handler with a topic filter takes topic traffic only: it is listed there.
        handled = [key for key, route in routes.items() if route.topic is None]
        received = handled or [ANY_MESSAGE_KEY]  # no handler: every message is not-understood
        broadcast_messages += handled
        inbox, rpc = subjects.inbox(agent.id), subjects.rpc(agent.id)
        lane = subjects.priority_inbox(agent.id)
        consumer = subjects.durable("agent", agent.id)
        lane_consumer = subjects.durable("prio", agent.id)
        rpc_queue = subjects.durable("rpc", agent.id)
        broadcast_consumer = subjects.durable("broadcast", agent.id)

        channel(
            inbox,
            f"The durable inbox of agent `{agent.id}`: JetStream stream `{inbox_stream}`, "
            f"durable consumer `{consumer}`, explicit acks. Send with a JetStream publish "
            "and `Nats-Msg-Id`.",
            [ANY_MESSAGE_KEY, *handled],
            bindings={"nats": {"subject": inbox, "queue": consumer}},
            **{
                "x-aclbus": {
                    "stream": inbox_stream,
                    "consumer": consumer,
                    "delivery": DeliveryMode.AT_LEAST_ONCE.value,
                }
            },
        )
        channel(
            lane,
            f"The priority lane of agent `{agent.id}`'s inbox: messages of priority "
            f"{settings.priority_threshold} or more, consumed beside the inbox (durable "
            f"consumer `{lane_consumer}`, stream `{inbox_stream}`, made when the lane first "
            "holds a message) so they overtake a backlog.",
            [ANY_MESSAGE_KEY, *handled],
            bindings={"nats": {"subject": lane, "queue": lane_consumer}},
            **{
                "x-aclbus": {
                    "stream": inbox_stream,
                    "consumer": lane_consumer,
                    "delivery": DeliveryMode.AT_LEAST_ONCE.value,
                }
            },
        )
        channel(
            rpc,
            f"Requests to agent `{agent.id}`: core NATS request-reply, not stored, served in "
            f"the queue group `{rpc_queue}`. With no agent serving it, a request fails at "
            "once (no responders).",
            [ANY_MESSAGE_KEY, *handled],
            bindings={"nats": {"subject": rpc, "queue": rpc_queue}},
            **{"x-aclbus": {"delivery": DeliveryMode.AT_MOST_ONCE.value}},
        )
        receive(
            f"{agent.id}.inbox",
            inbox,
            received,
            summary=f"Agent `{agent.id}` handles a message sent to it.",
        )
        receive(
            f"{agent.id}.priority",
            lane,
            received,
            summary=f"Agent `{agent.id}` handles an urgent message sent to it.",
        )
        receive(
            f"{agent.id}.rpc",
            rpc,
            received,
            summary=f"Agent `{agent.id}` answers a request.",
            reply={
                "channel": ref("channels", reply),
                "messages": [ref("channels", reply, "messages", ANY_MESSAGE_KEY)],
            },
        )
        receive(
            f"{agent.id}.broadcast",
            broadcast,
            received,
            summary=f"Agent `{agent.id}` handles a broadcast (every agent gets a copy).",
            **{
                "x-aclbus": (
                    {"consumer": broadcast_consumer, "queue": broadcast_consumer}
                    if persistent_broadcast
                    else {"queue": broadcast_consumer}
                )
            },
        )
        for group in agent.groups:
            group_consumer = subjects.durable("group", group, agent.id)
            group_messages.setdefault(group, [ANY_MESSAGE_KEY]).extend(handled)
            receive(
                f"{agent.id}.group.{group}",
                subjects.group(group),
                received,
                summary=f"Agent `{agent.id}` handles a message multicast to group `{group}`.",
                **{"x-aclbus": {"consumer": group_consumer, "queue": group_consumer}},
            )
        for pattern in agent.topics:
            # The handlers that can take messages of this pattern: a subscription's own
            # handler, or the agent's handlers with no topic filter or an overlapping one.
            taking = [
                key
                for key, route in routes.items()
                if route.topic is None or overlaps(route.topic, pattern)
            ]
            topic_messages.setdefault(pattern, [ANY_MESSAGE_KEY]).extend(taking)
            receive(
                f"{agent.id}.topic.{pattern}",
                subjects.topic(pattern, pattern=True),
                taking or [ANY_MESSAGE_KEY],
                summary=f"Agent `{agent.id}` handles messages published on `{pattern}`.",
            )

    channel(
        broadcast,
        "Broadcasts: every agent receives a copy. "
        + (
            f"JetStream stream `{broadcast_stream}`, a durable consumer per agent "
            f"(`{subjects.prefix}-broadcast-<agent>`) that starts with the messages published "
            "after it was made."
            if persistent_broadcast
            else "Core NATS, not stored."
        ),
        broadcast_messages,
        bindings={"nats": {"subject": broadcast}},
        **{
            "x-aclbus": (
                {"stream": broadcast_stream, "delivery": settings.broadcast_mode.value}
                if persistent_broadcast
                else {"delivery": settings.broadcast_mode.value}
            )
        },
    )
    for group, keys in group_messages.items():
        address = subjects.group(group)
        channel(
            address,
            f"Multicast group `{group}`: each member gets a copy (members are listed in the "
            f"KV bucket `{subjects.bucket('groups')}`, keys `{group}.<agent>`). JetStream "
            f"stream `{group_stream}`, a durable consumer per member "
            f"(`{subjects.prefix}-group-{group}-<agent>`) that starts with the messages "
            "published after the member joined; leaving deletes it.",
            list(dict.fromkeys(keys)),
            bindings={"nats": {"subject": address}},
            **{
                "x-aclbus": {
                    "stream": group_stream,
                    "delivery": DeliveryMode.AT_LEAST_ONCE.value,
                }
            },
        )
    for pattern, keys in topic_messages.items():
        address = subjects.topic(pattern, pattern=True)
        channel(
            address,
            f"Topic pattern `{pattern}` (`*` matches one token, `>` the rest): messages "
            f"published on a matching topic. A persistent publish is stored in the JetStream "
            f"stream `{topic_stream}`; an at-least-once subscriber reads it with a durable "
            "consumer of its own, an at-most-once one gets what arrives while it runs.",
            list(dict.fromkeys(keys)),
            bindings={"nats": {"subject": address}},
            **{"x-aclbus": {"stream": topic_stream, "pattern": pattern}},
        )
    channel(
        reply,
        "The reply subject a requester sends with its request (a NATS `_INBOX.` subject, so "
        "no fixed address): the agent publishes its answer there, once, with core NATS.",
        [ANY_MESSAGE_KEY],
        address=None,
    )
