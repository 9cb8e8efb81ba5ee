"""The gateway's running state: its bus and settings, shared by every route."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Request

if TYPE_CHECKING:
    from aclbus import Bus
    from aclbus_gateway.settings import GatewaySettings

__all__ = ["Gateway", "current_gateway"]


@dataclass
class Gateway:
    """What the routes share: the bus the gateway speaks through, and its settings.

    Attributes:
        bus: The started bus.
        settings: The gateway's settings.
        extensions: State the route modules keep (webhook dispatcher, streams), by name.
    """

    bus: Bus
    settings: GatewaySettings
    extensions: dict[str, Any] = field(default_factory=dict)


def current_gateway(request: Request) -> Gateway:
    """The `Gateway` of the application serving ``request`` (a FastAPI dependency)."""
    gateway: Gateway = request.app.state.gateway
    return gateway
