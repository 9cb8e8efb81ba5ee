"""The gateway's FastAPI application: the bus starts with it and stops after it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from aclbus import Bus, Settings
from aclbus_gateway.routes import EXTENSIONS, ROUTERS
from aclbus_gateway.settings import GatewaySettings
from aclbus_gateway.state import Gateway

__all__ = ["create_app"]


def create_app(
    settings: Settings | None = None,
    *,
    gateway: GatewaySettings | None = None,
    bus: Bus | None = None,
) -> FastAPI:
    """The gateway application.

    Args:
        settings: The bus' settings (default: read from the environment and ``aclbus.toml``).
        gateway: The gateway's settings (default: ``ACLBUS_GATEWAY__*``, ``[gateway]``).
        bus: A bus to speak through, started and stopped by its owner; by default the
            application makes one from ``settings``, starts it with the application and
            stops it after.
    """
    gateway_settings = gateway if gateway is not None else GatewaySettings()

    @asynccontextmanager
    async def serving(app: FastAPI, on: Bus) -> AsyncIterator[None]:
        gateway = Gateway(on, gateway_settings)
        for extend in EXTENSIONS:
            extend(gateway)
        app.state.gateway = gateway
        try:
            await gateway.start()
            yield
        finally:
            await gateway.stop()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if bus is not None:
            async with serving(app, bus):
                yield
            return
        async with Bus(settings) as own, serving(app, own):
            yield

    app = FastAPI(title="aclbus gateway", version="0.1.0", lifespan=lifespan)
    for router in ROUTERS:
        app.include_router(router)
    return app
