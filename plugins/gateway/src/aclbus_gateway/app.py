"""The gateway's FastAPI application: the bus starts with it and stops after it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from pydantic import SecretStr

from aclbus import Bus, Settings
from aclbus.errors import ConfigurationError
from aclbus_gateway.body_limit import LimitBody
from aclbus_gateway.bus_metrics import gateway_bus
from aclbus_gateway.counters import CountRequests, RequestCounters
from aclbus_gateway.errors import install_error_handlers
from aclbus_gateway.policy import allowed_agents
from aclbus_gateway.routes import ROUTERS, SERVICES
from aclbus_gateway.settings import GatewaySettings
from aclbus_gateway.state import Gateway
from aclbus_gateway.tokens import TokenTable, read_tokens_file

__all__ = ["create_app"]

log = logging.getLogger("aclbus.gateway")

DESCRIPTION = (
    "The aclbus bus over HTTP: send, broadcast, request and join groups as your own agent "
    '(a bearer token names it). Errors are `{"error": <type>, "detail": ...}`.'
)


def create_app(
    settings: Settings | None = None,
    *,
    gateway: GatewaySettings | None = None,
    bus: Bus | None = None,
) -> FastAPI:
    """The gateway application.

    The tokens (``tokens`` and ``tokens_file``) and the policy are read here, so a mistake in
    them is an error now rather than at the first request.

    Args:
        settings: The bus' settings (default: read from the environment and ``aclbus.toml``).
        gateway: The gateway's settings (default: ``ACLBUS_GATEWAY__*``, ``[gateway]``).
        bus: A bus to speak through, started and stopped by its owner; by default the
            application makes one from ``settings`` (with metrics on, see
            `aclbus_gateway.bus_metrics`), starts it with the application and stops it after.

    Raises:
        ConfigurationError: The tokens or the policy cannot be used (naming what is wrong,
            never a token).
    """
    gateway_settings = gateway if gateway is not None else GatewaySettings()
    if bus is not None:
        settings = bus.settings
    elif settings is None:
        settings = Settings()
    tokens = TokenTable(_tokens(gateway_settings))
    if not tokens:
        log.warning(
            "the gateway has no tokens (ACLBUS_GATEWAY__TOKENS, ACLBUS_GATEWAY__TOKENS_FILE): "
            "every call but health and metrics is refused with 401"
        )
    allowed = allowed_agents()
    counters = RequestCounters()
    bus_settings = settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if bus is not None:
                speaking = bus
            else:
                own = gateway_bus(bus_settings, metrics=gateway_settings.metrics)
                speaking = await stack.enter_async_context(own)
            state = Gateway(speaking, gateway_settings, tokens, counters, allowed)
            app.state.gateway = state
            stack.push_async_callback(state.close)
            for service in SERVICES:
                await stack.enter_async_context(service(state))
            yield

    app = FastAPI(
        title="aclbus gateway",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    _document_request_limit(app, gateway_settings.max_request_timeout)
    limit = gateway_settings.max_body_bytes or settings.max_message_bytes
    app.add_middleware(LimitBody, limit=limit)
    app.add_middleware(CountRequests, counters=counters)  # outermost: counts the 413s too
    return app


def _document_request_limit(app: FastAPI, limit: float) -> None:
    """Write ``max_request_timeout`` into the OpenAPI document as the ``timeout``'s maximum.

    The bound is a setting, so the model cannot carry it; without it in the document a client
    (or schemathesis) could not tell that a longer timeout is refused.
    """
    make = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = make()
            timeout = document["components"]["schemas"]["RequestBody"]["properties"]["timeout"]
            for choice in timeout["anyOf"]:
                if choice.get("type") == "number":
                    choice["maximum"] = limit
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _tokens(settings: GatewaySettings) -> dict[str, SecretStr]:
    tokens = dict(settings.tokens)
    if settings.tokens_file is not None:
        for agent_id, token in read_tokens_file(settings.tokens_file).items():
            if agent_id in tokens:
                raise ConfigurationError(
                    f"agent {agent_id!r} has a token in both ACLBUS_GATEWAY__TOKENS and "
                    f"ACLBUS_GATEWAY__TOKENS_FILE ({str(settings.tokens_file)!r}): keep one"
                )
            tokens[agent_id] = token
    return tokens
