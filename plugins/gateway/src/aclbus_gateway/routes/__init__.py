"""The gateway's routes, one module per concept."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter

from aclbus_gateway.routes import groups, health, messages, stream, webhooks
from aclbus_gateway.state import Gateway

__all__ = ["EXTENSIONS", "ROUTERS"]

ROUTERS: tuple[APIRouter, ...] = (
    messages.router,
    groups.router,
    webhooks.router,
    stream.router,
    health.router,
)
"""Every router of the gateway, in the order of the OpenAPI document."""

EXTENSIONS: tuple[Callable[[Gateway], None], ...] = (webhooks.extend,)
"""What route modules add to a starting `Gateway` (agent set-ups, start and stop steps)."""
