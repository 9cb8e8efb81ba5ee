"""Health: the process is up (``/health/live``), it can serve (``/health/ready``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel

from aclbus_gateway.errors import ErrorBody
from aclbus_gateway.readiness import not_ready_because
from aclbus_gateway.state import Gateway, current_gateway

__all__ = ["Health", "Live", "router"]

router = APIRouter(tags=["health"])


class Live(BaseModel):
    """The process is up.

    Attributes:
        status: Always ``live``.
    """

    status: Literal["live"] = "live"


class Health(BaseModel):
    """The gateway's state.

    Attributes:
        status: ``ready``, or ``unavailable`` (``reason`` says why).
        reason: Why it is unavailable; None when ready.
        backend: The bus' backend (``nats``, ``memory``).
        hosted_agents: How many callers' agents the gateway hosts.
    """

    status: Literal["ready", "unavailable"]
    reason: str | None = None
    backend: str
    hosted_agents: int


Speaking = Annotated[Gateway, Depends(current_gateway)]
NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "Not ready (`NotReady`): `detail` says why."}
}


@router.get("/health/live", summary="The process is up")
async def live() -> Live:
    """Always 200 while the process serves HTTP (a liveness probe)."""
    return Live()


@router.get("/health/ready", summary="The gateway can serve", responses=NOT_READY)
async def ready(gateway: Speaking) -> Health:
    """200 when the broker is connected and JetStream answers; 503 with the reason otherwise."""
    reason = await not_ready_because(gateway)
    if reason is not None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=reason)
    return _health(gateway, None)


@router.get("/communication/health", summary="The gateway's state", tags=["messages"])
async def health(gateway: Speaking) -> Health:
    """The gateway's state, always 200: ``status`` and ``reason`` tell whether it can serve."""
    return _health(gateway, await not_ready_because(gateway))


def _health(gateway: Gateway, reason: str | None) -> Health:
    return Health(
        status="ready" if reason is None else "unavailable",
        reason=reason,
        backend=gateway.bus.backend.name,
        hosted_agents=len(gateway.hosted),
    )
