"""aclbus-gateway: the bus over HTTP (SPEC R14).

A FastAPI application (`create_app`), served by uvicorn with ``aclbus serve`` (the plugin,
entry point ``gateway``, registers that command): services in any language send, broadcast,
request, join groups, register webhooks and follow an agent's messages, each caller acting as
its own agent.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING, Any

from aclbus import hookimpl

if TYPE_CHECKING:
    from aclbus_gateway.app import create_app
    from aclbus_gateway.auth import Caller
    from aclbus_gateway.settings import GatewaySettings
    from aclbus_gateway.state import Gateway

__all__ = ["Caller", "Gateway", "GatewaySettings", "aclbus_register_commands", "create_app"]

# Every bus loads this module (the entry point) for its hooks: FastAPI, uvicorn and the
# routes load only when the gateway itself is used.
_LAZY = {
    "Caller": "aclbus_gateway.auth",
    "Gateway": "aclbus_gateway.state",
    "GatewaySettings": "aclbus_gateway.settings",
    "create_app": "aclbus_gateway.app",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


@hookimpl
def aclbus_register_commands(register: Callable[[Any], None]) -> None:
    """``aclbus serve``: the gateway under uvicorn."""
    from aclbus_gateway.command import serve

    register(serve)
