from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI

from aclbus import Bus, Settings
from aclbus_gateway import GatewaySettings, create_app
from aclbus_gateway.bus_metrics import gateway_bus

TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-0123456789"}


def _auth(agent: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[agent]}"}


@pytest.fixture
def auth() -> Callable[[str], dict[str, str]]:
    """The headers of a call as ``agent`` (alice or bob)."""
    return _auth


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    async with gateway_bus(Settings(backend="memory", request_timeout=2.0)) as started:
        yield started


@pytest.fixture
def gateway_settings() -> GatewaySettings:
    return GatewaySettings(tokens=TOKENS, max_request_timeout=5.0)  # type: ignore[arg-type]


@pytest.fixture
async def app(bus: Bus, gateway_settings: GatewaySettings) -> AsyncIterator[FastAPI]:
    application = create_app(bus=bus, gateway=gateway_settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http
