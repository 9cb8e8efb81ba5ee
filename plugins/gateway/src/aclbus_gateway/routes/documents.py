"""The AsyncAPI document of the gateway's bus (the OpenAPI one is FastAPI's ``/openapi.json``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status

from aclbus.errors import ConfigurationError
from aclbus_gateway.errors import responses
from aclbus_gateway.state import Gateway, current_gateway

__all__ = ["router"]

router = APIRouter(tags=["documents"])


@router.get(
    "/asyncapi.json",
    summary="The AsyncAPI document of the bus' channels",
    responses={
        200: {"content": {"application/json": {"schema": {"type": "object"}}}},
        **responses(404),
    },
)
async def asyncapi(gateway: Annotated[Gateway, Depends(current_gateway)]) -> dict[str, Any]:
    """The channels of the bus' agents, with the ACL headers (``bus.app``'s specification).

    404 on a backend without a FastStream broker (memory), which has no such document.
    """
    try:
        app = gateway.bus.app
    except ConfigurationError as exc:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"no AsyncAPI document on backend {gateway.bus.backend.name!r}: {exc}",
        ) from None
    document: dict[str, Any] = app.schema.to_specification().to_jsonable()
    return document
