"""What the gateway has done: its bus' counters and its own, as JSON and as Prometheus text."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.responses import Response
from pydantic import BaseModel

import aclbus_metrics
from aclbus.errors import ConfigurationError
from aclbus_gateway.auth import Caller, caller
from aclbus_gateway.errors import responses
from aclbus_gateway.state import Gateway, current_gateway

__all__ = ["GatewayCounters", "Statistics", "router"]

router = APIRouter(tags=["statistics"])


class GatewayCounters(BaseModel):
    """The gateway's own counters.

    Attributes:
        requests: Requests answered, by ``"<METHOD> <route>"`` and status code.
        hosted_agents: The callers' agents the gateway hosts.
    """

    requests: dict[str, dict[str, int]]
    hosted_agents: list[str]


class Statistics(BaseModel):
    """The bus' counters (`aclbus.BusStats`) and the gateway's.

    Attributes:
        bus: Published, requests, delivered, handled, failed, dead-lettered, ...
        gateway: The gateway's own counters.
    """

    bus: dict[str, int]
    gateway: GatewayCounters


@router.get(
    "/communication/statistics",
    summary="The bus' and the gateway's counters",
    tags=["messages"],
    responses=responses(401, 403),
)
async def statistics(
    gateway: Annotated[Gateway, Depends(current_gateway)],
    who: Annotated[Caller, Depends(caller)],
) -> Statistics:
    """The counters of the gateway's bus since it started, and the gateway's requests."""
    return Statistics(
        bus=gateway.bus.stats.as_dict(),
        gateway=GatewayCounters(
            requests=gateway.counters.as_dict(), hosted_agents=list(gateway.hosted)
        ),
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics of the gateway's bus",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **responses(404),
    },
)
async def metrics(gateway: Annotated[Gateway, Depends(current_gateway)]) -> Response:
    """The metrics plugin's registry of the gateway's bus, in Prometheus' text format.

    404 when the metrics are off (``ACLBUS_GATEWAY__METRICS=false``, or a bus given to
    `create_app` without the plugin).
    """
    if not gateway.settings.metrics:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail="metrics are off (ACLBUS_GATEWAY__METRICS=false)"
        )
    try:
        registry = aclbus_metrics.registry(gateway.bus)
    except ConfigurationError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    return Response(aclbus_metrics.exposition(registry), media_type=aclbus_metrics.CONTENT_TYPE)
