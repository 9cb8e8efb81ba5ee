"""The gateway's routes, one module per concept."""

from __future__ import annotations

from fastapi import APIRouter

from aclbus_gateway.routes import groups, health, messages, stream, webhooks

__all__ = ["ROUTERS"]

ROUTERS: tuple[APIRouter, ...] = (
    messages.router,
    groups.router,
    webhooks.router,
    stream.router,
    health.router,
)
"""Every router of the gateway, in the order of the OpenAPI document."""
