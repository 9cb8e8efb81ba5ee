"""The gateway's routes, one module per concept, and the services that run beside them."""

from __future__ import annotations

from fastapi import APIRouter

from aclbus_gateway.routes import (
    documents,
    groups,
    health,
    messages,
    statistics,
    stream,
    webhooks,
)
from aclbus_gateway.state import GatewayService

__all__ = ["ROUTERS", "SERVICES"]

ROUTERS: tuple[APIRouter, ...] = (
    messages.router,
    groups.router,
    webhooks.router,
    stream.router,
    statistics.router,
    health.router,
    documents.router,
)
"""Every router of the gateway, in the order of the OpenAPI document."""

SERVICES: tuple[GatewayService, ...] = (webhooks.service,)
"""What runs while the gateway runs (`aclbus_gateway.state.GatewayService`), in start order."""
