"""The AsyncAPI messages of an agent's handlers, their payload schemas, and JSON references.

A handler's performatives, message type and topic become constraints on the ACL headers; its
``payload=`` model, the message's payload schema (shared in ``components/schemas``).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from faststream.specification.asyncapi.v3_0_0.schema import Message
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from aclbus.wire import CE_TYPE_PREFIX
from aclbus_nats.asyncapi.schema import HEADERS_KEY, ID_PATTERN, PAYLOAD_KEY

if TYPE_CHECKING:
    from aclbus import Agent
    from aclbus.handling import Route

__all__ = ["add_handler_messages", "add_payload_schemas", "message_object", "ref"]


def ref(*parts: str) -> dict[str, str]:
    """A ``$ref`` to the object at ``parts`` of the document (``ref("channels", key)``)."""
    # Keys are ids, handler names, topic patterns and fixed words. In a JSON pointer `~` and
    # `/` are escaped; in the URI fragment a $ref is, `>` (a topic wildcard) is not allowed
    # as such and is percent-encoded (RFC 6901, section 6).
    escaped = (p.replace("~", "~0").replace("/", "~1").replace(">", "%3E") for p in parts)
    return {"$ref": "#/" + "/".join(escaped)}


def add_payload_schemas(
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


def add_handler_messages(
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
            message_object(
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
                headers={"allOf": [ref("components", "schemas", HEADERS_KEY), constraints]},
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
        ID_PATTERN
        if token == "*"
        else rf"{ID_PATTERN}(\.{ID_PATTERN})*"
        if token == ">"
        else re.escape(token)
        for token in dotted.split(".")
    ]
    return {"type": "string", "pattern": "^" + r"\.".join(tokens) + "$"}


def message_object(
    *,
    title: str,
    headers: dict[str, Any],
    summary: str | None = None,
    name: str | None = None,
    description: str | None = None,
    payload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An AsyncAPI message object (to validate as `Message`) of ``headers`` and ``payload``.

    Every aclbus message is JSON by default and correlated by ``acl-correlation-id``; without
    ``payload`` it is any JSON.
    """
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
        "payload": payload or ref("components", "schemas", PAYLOAD_KEY),
    }
