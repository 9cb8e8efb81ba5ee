"""The FastStream app of a bus on NATS: `faststream run` serves its agents, `docs gen` lists them.

`make_app` (reached as ``bus.app``) builds a ``faststream.FastStream`` app on the backend's
`NatsBroker`. FastStream gives the process its life cycle (``faststream run module:app``, signals,
hooks) and the AsyncAPI document; the messages themselves never go through FastStream's
per-message path: the agents' subscriptions are made by `NatsBackend` on the broker's nats-py
connection (DESIGN.md, "The hot path").

Life cycle, in the order FastStream runs it::

    on_startup     bus.start(): the embedded nats-server if any, broker.connect(), streams,
                   agents; then the user's own on_startup hooks (the bus is up: they may send)
    broker.start() already connected; starts FastStream subscribers the user added, if any
    after_startup  the user's hooks
    -- running --
    on_shutdown    the user's hooks (the bus is still up), then bus.stop(): agents stop,
                   broker.stop() drains the connection, the embedded server stops
    broker.stop()  a no-op by then: already stopped
    after_shutdown the user's hooks

``faststream run --workers N`` runs the app in N processes, each with a bus of its own. They
must share one NATS server: with no ``ACLBUS_NATS__SERVERS`` each worker would start an
embedded server of its own, and the workers would not see each other's messages. Each worker
refuses that at start-up (`WORKERS_NEED_A_SERVER`) and asks FastStream's supervisor to stop,
rather than failing into FastStream's endless restarts of a worker that exits.

The AsyncAPI document is made when it is asked for (``faststream docs gen``, ``docs serve``,
``app.schema.to_specification()``), from the agents the bus has at that moment: agents made
after ``bus.app`` are listed too. They are added as plain documentation objects, never as
FastStream subscribers, so documenting an agent cannot open a second subscription to its
messages.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
import multiprocessing
import os
import re
import signal
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from faststream import FastStream
from faststream.specification import AsyncAPI
from faststream.specification.asyncapi.v3_0_0.schema import (
    ApplicationSchema,
    Channel,
    Components,
    Message,
    Operation,
)
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from aclbus import __version__
from aclbus.acl import ACL_VERSION, MAX_CAUSATION, Performative
from aclbus.backend import DeliveryMode
from aclbus.errors import ConfigurationError
from aclbus.subjects import MAX_ID_LENGTH, TrafficClass
from aclbus.wire import CE_SPECVERSION, CE_TYPE_PREFIX

if TYPE_CHECKING:
    from faststream.specification.base import Specification

    from aclbus.agent import Agent, Route
    from aclbus.bus import Bus
    from aclbus_nats.backend import NatsBackend

__all__ = ["ACL_HEADERS_SCHEMA", "WORKERS_NEED_A_SERVER", "BusAsyncAPI", "make_app"]

log = logging.getLogger("aclbus.nats")

WORKERS_NEED_A_SERVER: Final = (
    "faststream run --workers: the workers would each start an embedded nats-server of their "
    "own (ACLBUS_NATS__SERVERS is not set), and agents in different workers would never see "
    "each other's messages, streams or KV buckets. Start one nats-server (nats-server -js) and "
    "set ACLBUS_NATS__SERVERS=nats://host:4222 for every worker, or run a single worker "
    "without --workers. Stopping faststream run (worker {worker})."
)
"""What a worker of ``faststream run --workers`` says when it has no server to share."""

_SUPERVISOR_GRACE = 60.0
"""Seconds a refusing worker waits for the supervisor to stop it before failing by itself
(FastStream's supervisor gives each worker 30 s to stop)."""

_ID: Final = f"[A-Za-z0-9_-]{{1,{MAX_ID_LENGTH}}}"
_TIME: Final = {"type": "string", "format": "date-time", "description": "RFC 3339, UTC"}


def _id(description: str) -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{_ID}$", "description": description}


def _dotted(description: str) -> dict[str, Any]:
    return {"type": "string", "pattern": rf"^{_ID}(\.{_ID})*$", "description": description}


def _text(description: str) -> dict[str, Any]:
    # 1-1024 printable ASCII characters, no space at either end (wire format, 4.5).
    return {"type": "string", "pattern": "^[!-~]([ -~]{0,1022}[!-~])?$", "description": description}


def _integer(description: str) -> dict[str, Any]:
    return {"type": "string", "pattern": "^[0-9]{1,10}$", "description": description}


ACL_HEADERS_SCHEMA: Final[dict[str, Any]] = {
    "title": "ACLHeaders",
    "type": "object",
    "description": (
        "The envelope of an aclbus message, in NATS headers (wire format "
        f"{ACL_VERSION}, docs/wire-format.md): CloudEvents binary mode (ce-*) and FIPA ACL "
        "fields (acl-*). Names are case-insensitive. Other headers are application headers "
        "(traceparent, ...) or acl-* extensions of a newer minor version."
    ),
    "required": ["ce-specversion", "ce-id", "ce-source", "ce-type"],
    "properties": {
        "ce-specversion": {"type": "string", "const": CE_SPECVERSION},
        "ce-id": _id("message_id (a UUIDv7 when aclbus makes it)"),
        "ce-source": _id("sender_id: the sending agent"),
        "ce-type": {
            "type": "string",
            "enum": [CE_TYPE_PREFIX + p.value for p in Performative],
            "description": "the performative",
        },
        "ce-time": {**_TIME, "description": "timestamp, RFC 3339, UTC"},
        "content-type": {
            "type": "string",
            "default": "application/json",
            "description": "the body's codec",
        },
        "acl-version": {
            "type": "string",
            "pattern": "^[0-9]{1,4}\\.[0-9]{1,4}$",
            "default": ACL_VERSION,
        },
        "acl-receiver-id": _id("receiver_id: the agent it is for"),
        "acl-receivers": {
            "type": "string",
            "pattern": f"^{_ID}(,{_ID})*$",
            "description": "receivers, joined by ',' without spaces",
        },
        "acl-priority": _integer("priority, 0 (lowest) to 9; 4 when absent"),
        "acl-retry-count": _integer("retry_count; 0 when absent"),
        "acl-ttl": {
            "type": "string",
            "pattern": r"^[0-9]{1,20}(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?$",
            "description": "ttl: seconds after ce-time, at least 1; never expires when absent",
        },
        "acl-reply-by": {**_TIME, "description": "reply_by: the latest useful reply"},
        "acl-hops": _integer(
            "hops: agents the message has passed through, 0 to 255; 0 when absent. A bus "
            "refuses to send, and dead-letters on receipt, one over ACLBUS_MAX_HOPS"
        ),
        "acl-caused-by": {
            "type": "string",
            "pattern": f"^{_ID}(,{_ID}){{0,{MAX_CAUSATION - 1}}}$",
            "description": "caused_by: ids of the messages that led to this one, oldest first",
        },
        "acl-correlation-id": _id("correlation_id: the conversation"),
        "acl-reply-to": _id("reply_to: where replies go, when not the sender"),
        "acl-reply-with": _id("reply_with: to be quoted in the reply's acl-in-reply-to"),
        "acl-in-reply-to": _id("in_reply_to: what this message answers"),
        "acl-protocol": _id("protocol: the interaction protocol"),
        "acl-message-type": _dotted("message_type: the application's message type"),
        "acl-topic": _dotted("topic: the topic it was published on"),
        "acl-routing-key": _text("routing_key: related messages keep their order per key"),
        "acl-language": _text("language of the content"),
        "acl-ontology": _text("ontology of the content"),
    },
    "additionalProperties": {"type": "string"},
}
"""JSON Schema of the headers of an aclbus message (``docs/wire-format.md``, section 3)."""

_ANY_JSON: Final[dict[str, Any]] = {
    "title": "AnyJSON",
    "description": (
        "The payload: any JSON value (RFC 8259, UTF-8); an empty body is null. The handler "
        "declares no schema of its own."
    ),
}

_HEADERS_KEY: Final = "ACLHeaders"
_PAYLOAD_KEY: Final = "AnyJSON"
_ANY_MESSAGE_KEY: Final = "ACLMessage"


def make_app(backend: NatsBackend, bus: Bus) -> FastStream:
    """A FastStream app on ``backend.broker`` that runs ``bus`` (what `Bus.app` returns).

    The bus starts in the app's first ``on_startup`` hook, so before ``broker.start()``: the
    embedded nats-server (with no ``ACLBUS_NATS__SERVERS``) is up before anything connects. It
    stops in the app's last ``on_shutdown`` hook, after the user's own, so that they can still
    send. Stopping the bus stops the broker and the embedded server; FastStream's own
    ``broker.stop()`` that follows finds nothing left to do, and neither fails if the broker
    was stopped by hand before.

    The AsyncAPI document (``faststream docs gen module:app``) lists each agent's inbox,
    request subject, broadcast, group and topic subscriptions with the ACL headers and the
    handlers' payload schemas (see `BusAsyncAPI`). Title, version and description come from
    the bus and can be changed on ``app.schema`` (``app.schema.title = "Billing agents"``).

    Args:
        backend: The bus' backend; its broker becomes the app's broker.
        bus: The bus to run.

    Returns:
        The app, for ``faststream run module:app``.

    Raises:
        ConfigurationError: ``backend`` is not the bus' backend.
    """
    if bus.backend is not backend:
        raise ConfigurationError(
            "make_app() needs the bus' own backend: use `bus.app` rather than calling it"
        )
    prefix = bus.settings.subject_prefix
    specification = BusAsyncAPI(
        bus,
        title="aclbus" if prefix == "aclbus" else f"aclbus {prefix}",
        version=__version__,
        description=(
            f"The agents of an aclbus bus (subject prefix `{prefix}`) on NATS JetStream. "
            f"Every message follows the aclbus wire format {ACL_VERSION}: the envelope in "
            "CloudEvents `ce-*` and FIPA ACL `acl-*` headers, the payload as the body (JSON "
            "by default)."
        ),
    )
    stop_registered = False

    async def start_bus(worker_id: int | None = None) -> None:
        # FastStream passes worker_id to on_startup hooks: None unless `run --workers N`.
        if worker_id is not None and backend.server is not None:
            await _refuse_worker(worker_id)
        nonlocal stop_registered
        await bus.start()
        if not stop_registered:
            # Registered now rather than with the app, so that it comes after every
            # on_shutdown hook the user's module added: those still find the bus running.
            app.on_shutdown(stop_bus)
            stop_registered = True

    async def stop_bus() -> None:
        await bus.stop()

    app = FastStream(backend.broker, on_startup=[start_bus], specification=specification)
    return app


async def _refuse_worker(worker_id: int) -> None:
    """Refuse to run worker ``worker_id`` on an embedded server of its own; stop the run.

    Raising from the start-up hook would not do: FastStream's supervisor restarts a worker
    that exits, forever, each time with a traceback. So the worker logs why, sends SIGTERM to
    the supervisor (its parent, which then stops every worker and exits), and waits here to be
    stopped with the others, having started nothing.

    Raises:
        ConfigurationError: No supervisor to stop, or it did not stop this worker in time.
    """
    message = WORKERS_NEED_A_SERVER.format(worker=worker_id)
    log.error("%s", message)
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid == os.getppid():
        os.kill(parent.pid, signal.SIGTERM)  # FastStream's supervisor: stop every worker
        await asyncio.sleep(_SUPERVISOR_GRACE)  # cancelled when the supervisor stops us
    raise ConfigurationError(message)


class BusAsyncAPI(AsyncAPI):
    """FastStream's AsyncAPI 3.0 document, with the channels of the bus' agents added.

    Each agent has a durable inbox (``{prefix}.agent.{id}``, stream ``{PREFIX}_AGENT``), a
    request subject (``{prefix}.rpc.{id}``, answered on the requester's reply subject), a
    subscription to broadcasts (``{prefix}.broadcast``), one to each group it has joined
    (``{prefix}.group.{group}``: joining needs a running bus, so groups show in a document
    made while it runs) and one to each topic pattern it subscribes to
    (``{prefix}.topic.{pattern}``). Each handler is a message of its agent's operations: its
    performatives, message type and topic constrain ``ce-type``, ``acl-message-type`` and
    ``acl-topic``; its payload is the JSON schema of its ``payload=`` model (in
    ``components/schemas``, by the model's name), else any JSON.

    The agents are read at every `to_specification` call, so the document follows the bus.

    Args:
        bus: The bus whose agents to document.
        **kwargs: As ``faststream.specification.AsyncAPI`` (title, version, description, ...).
    """

    def __init__(self, bus: Bus, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bus = bus

    def to_specification(self) -> Specification:
        """FastStream's document of the broker, plus the agents' channels and operations.

        Raises:
            ConfigurationError: ``schema_version`` is not 3.x.
        """
        schema = super().to_specification()
        if not isinstance(schema, ApplicationSchema):
            raise ConfigurationError(
                f"aclbus documents its agents in AsyncAPI 3.0, not {self.schema_version!r}: "
                "leave app.schema.schema_version at '3.0.0'"
            )
        _add_agents(schema, self.bus)
        return schema


def _ref(*parts: str) -> dict[str, str]:
    # Keys are ids, handler names, topic patterns and fixed words. In a JSON pointer `~` and
    # `/` are escaped; in the URI fragment a $ref is, `>` (a topic wildcard) is not allowed
    # as such and is percent-encoded (RFC 6901, section 6).
    escaped = (p.replace("~", "~0").replace("/", "~1").replace(">", "%3E") for p in parts)
    return {"$ref": "#/" + "/".join(escaped)}


def _add_agents(schema: ApplicationSchema, bus: Bus) -> None:
    """Add the channels, operations and messages of ``bus``' agents to ``schema``."""
    subjects, settings = bus.subjects, bus.settings
    components = schema.components = schema.components or Components()
    schemas = components.schemas = dict(components.schemas or {})
    messages = components.messages = dict(components.messages or {})
    schemas[_HEADERS_KEY] = copy.deepcopy(ACL_HEADERS_SCHEMA)
    schemas[_PAYLOAD_KEY] = dict(_ANY_JSON)
    messages[_ANY_MESSAGE_KEY] = Message.model_validate(
        _message(
            title="ACL message",
            summary="Any aclbus message.",
            headers=_ref("components", "schemas", _HEADERS_KEY),
        )
    )
    payloads = _add_payload_schemas(bus.agents.values(), schemas)
    servers = [_ref("servers", name) for name in schema.servers or {}] or None

    def channel(key: str, description: str, message_keys: Iterable[str], **more: Any) -> None:
        schema.channels[key] = Channel.model_validate(
            {
                "address": key,
                "description": description,
                "servers": servers,
                "messages": {k: _ref("components", "messages", k) for k in message_keys},
                **more,
            }
        )

    def receive(key: str, channel_key: str, message_keys: list[str], **more: Any) -> None:
        schema.operations[key] = Operation.model_validate(
            {
                "action": "receive",
                "channel": _ref("channels", channel_key),
                "messages": [_ref("channels", channel_key, "messages", k) for k in message_keys],
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
    broadcast_messages = [_ANY_MESSAGE_KEY]
    # Groups and topic patterns are shared by their members: one channel each, with the
    # messages of every agent on it.
    group_messages: dict[str, list[str]] = {}
    topic_messages: dict[str, list[str]] = {}

    for agent in bus.agents.values():
        routes = _add_handler_messages(agent, messages, payloads)
        # A handler with a topic filter takes topic traffic only: it is listed there.
        handled = [key for key, route in routes.items() if route.topic is None]
        received = handled or [_ANY_MESSAGE_KEY]  # no handler: every message is not-understood
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
            [_ANY_MESSAGE_KEY, *handled],
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
            [_ANY_MESSAGE_KEY, *handled],
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
            [_ANY_MESSAGE_KEY, *handled],
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
                "channel": _ref("channels", reply),
                "messages": [_ref("channels", reply, "messages", _ANY_MESSAGE_KEY)],
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
            group_messages.setdefault(group, [_ANY_MESSAGE_KEY]).extend(handled)
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
                if route.topic is None or _patterns_overlap(route.topic, pattern)
            ]
            topic_messages.setdefault(pattern, [_ANY_MESSAGE_KEY]).extend(taking)
            receive(
                f"{agent.id}.topic.{pattern}",
                subjects.topic(pattern, pattern=True),
                taking or [_ANY_MESSAGE_KEY],
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
        [_ANY_MESSAGE_KEY],
        address=None,
    )


def _patterns_overlap(a: str, b: str) -> bool:
    """Whether some topic matches both patterns (``*``: one token, ``>``: one or more)."""
    left, right = a.split("."), b.split(".")
    for x, y in zip(left, right, strict=False):
        if x == ">" or y == ">":
            return True  # both have a token here; '>' takes it and any that follow
        if x != y and "*" not in (x, y):
            return False
    return len(left) == len(right)


def _add_payload_schemas(
    agents: Iterable[Agent], schemas: dict[str, Any]
) -> dict[type[BaseModel], dict[str, str]]:
    """Add the JSON schemas of the handlers' payload models to ``schemas``; return their refs.

    Models (and the models they use) are named by their class names; pydantic makes the
    names unique when two models share one. Should one clash with a schema already in the
    document, every payload schema is named ``payload.<Model>`` instead.
    """
    models = list(
        dict.fromkeys(route.payload for agent in agents for route in agent.routes if route.payload)
    )
    if not models:
        return {}
    for prefix in ("", "payload."):
        refs, top = models_json_schema(
            [(model, "validation") for model in models],
            ref_template=f"#/components/schemas/{prefix}{{model}}",
        )
        defs = {f"{prefix}{name}": value for name, value in top.get("$defs", {}).items()}
        if not any(schemas.get(name, value) != value for name, value in defs.items()):
            break
    schemas.update(defs)
    return {model: dict(refs[(model, "validation")]) for model in models}


def _add_handler_messages(
    agent: Agent, messages: dict[str, Message], payloads: dict[type[BaseModel], dict[str, str]]
) -> dict[str, Route]:
    """Add a message per handler of ``agent`` to ``messages``; return them by key, in order.

    A handler's performatives and message type (or pattern) become constraints on ``ce-type``
    and ``acl-message-type``; its docstring's first line, the message's summary; its payload
    model, the message's payload schema (else any JSON).
    """
    keys: dict[str, Route] = {}
    for route in agent.routes:
        name = getattr(route.func, "__name__", "handler")
        key, n = f"{agent.id}.{name}", 2
        while key in keys:  # one function registered twice, with other filters
            key, n = f"{agent.id}.{name}-{n}", n + 1
        acts = sorted(p.value for p in route.performatives) if route.performatives else []
        properties: dict[str, Any] = {}
        required: list[str] = []
        if acts:
            properties["ce-type"] = {
                "type": "string",
                "enum": [CE_TYPE_PREFIX + act for act in acts],
            }
        if route.message_type is not None:
            properties["acl-message-type"] = _type_constraint(route.message_type)
            required.append("acl-message-type")
        if route.topic is not None:
            properties["acl-topic"] = _type_constraint(route.topic)
            required.append("acl-topic")
        constraints: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            constraints["required"] = required
        doc = inspect.getdoc(route.func)
        model = route.payload
        messages[key] = Message.model_validate(
            _message(
                title=f"{', '.join(acts) or 'any act'} {route.message_type or '(any type)'}",
                name=getattr(route.func, "__qualname__", name),
                summary=doc.splitlines()[0] if doc else None,
                description=(
                    f"The payload is validated against `{model.__name__}` before the handler "
                    "runs; an invalid one is answered `not-understood` with the validation "
                    "errors and dead-lettered (reason `invalid-payload`)."
                    if model is not None
                    else None
                ),
                headers={"allOf": [_ref("components", "schemas", _HEADERS_KEY), constraints]},
                payload=payloads[model] if model is not None else None,
            )
        )
        keys[key] = route
    return keys


def _type_constraint(dotted: str) -> dict[str, Any]:
    """The JSON schema of a header holding ``dotted``, or any name ``dotted`` matches."""
    if "*" not in dotted.split(".") and not dotted.endswith(">"):
        return {"type": "string", "const": dotted}
    tokens = [
        _ID if token == "*" else rf"{_ID}(\.{_ID})*" if token == ">" else re.escape(token)
        for token in dotted.split(".")
    ]
    return {"type": "string", "pattern": "^" + r"\.".join(tokens) + "$"}


def _message(
    *,
    title: str,
    headers: dict[str, Any],
    summary: str | None = None,
    name: str | None = None,
    description: str | None = None,
    payload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "title": title,
        "name": name,
        "summary": summary,
        "description": description,
        "contentType": "application/json",
        "correlationId": {
            "location": "$message.header#/acl-correlation-id",
            "description": "the conversation (FIPA conversation-id)",
        },
        "headers": headers,
        "payload": payload or _ref("components", "schemas", _PAYLOAD_KEY),
    }
