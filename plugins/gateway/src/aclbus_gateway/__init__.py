"""aclbus-gateway: the bus over HTTP (SPEC R14).

A FastAPI application (`create_app`), served by uvicorn with ``aclbus serve`` (the plugin,
entry point ``gateway``, registers that command): services in any language send, broadcast,
request, join groups, register webhooks and follow an agent's messages, each caller acting as
its own agent.
"""

from __future__ import annotations

from aclbus_gateway.app import create_app
from aclbus_gateway.auth import Caller
from aclbus_gateway.settings import GatewaySettings
from aclbus_gateway.state import Gateway

__all__ = ["Caller", "Gateway", "GatewaySettings", "create_app"]
