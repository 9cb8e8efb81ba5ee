"""The gateway's webhooks routes: register, list and delete the caller's webhooks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, status

from aclbus.errors import ACLBusError
from aclbus.redaction import redact
from aclbus_gateway.auth import Caller, caller
from aclbus_gateway.errors import responses
from aclbus_gateway.state import Gateway, current_gateway
from aclbus_gateway.webhooks import (
    WEBHOOK_ID,
    BadFilter,
    TooManyWebhooks,
    WebhookRequest,
    Webhooks,
    WebhooksUnavailable,
    WebhookView,
    WebhookWithSecret,
)

__all__ = ["router", "service"]

router = APIRouter(prefix="/communication/handlers", tags=["webhooks"])


@asynccontextmanager
async def service(gateway: Gateway) -> AsyncIterator[None]:
    """Webhooks while the gateway runs (an `aclbus_gateway.state.GatewayService`).

    Registrations are reloaded and their agents hosted again at start; POSTs stop at the end.
    """
    webhooks = Webhooks.extend(gateway)
    await webhooks.start()
    try:
        yield
    finally:
        await webhooks.stop()


def _webhooks(gateway: Annotated[Gateway, Depends(current_gateway)]) -> Webhooks:
    webhooks: Webhooks = gateway.extensions["webhooks"]
    return webhooks


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookWithSecret,
    summary="Register a webhook for the caller's agent",
    responses=responses(400, 401, 403, 409, 413, 422, 501, 503),
)
async def register_webhook(
    body: WebhookRequest,
    who: Annotated[Caller, Depends(caller)],
    webhooks: Annotated[Webhooks, Depends(_webhooks)],
) -> WebhookWithSecret:
    """Messages of the caller's agent that pass the filters are POSTed to ``url``.

    The answer holds the webhook's signing ``secret``: it is shown this once only.
    """
    try:
        registration = await webhooks.register(who.agent_id, body)
    except BadFilter as exc:
        detail = [{"loc": ["body", exc.field], "msg": str(exc), "type": "value_error"}]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail) from None
    except TooManyWebhooks as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    except WebhooksUnavailable as exc:
        raise HTTPException(status.HTTP_501_NOT_IMPLEMENTED, detail=str(exc)) from None
    except ACLBusError as exc:  # the broker refused the agent's topic or group (a limit)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"the webhook could not be set up, nothing was kept: {type(exc).__name__}: "
            f"{redact(str(exc))[:300]}",
        ) from None
    return registration.shown_once()


@router.get(
    "",
    response_model=list[WebhookView],
    summary="The caller's webhooks",
    responses=responses(401, 403),
)
async def list_webhooks(
    who: Annotated[Caller, Depends(caller)],
    webhooks: Annotated[Webhooks, Depends(_webhooks)],
) -> list[WebhookView]:
    """The caller's agent's webhooks, oldest first, without their secrets."""
    return [r.view() for r in webhooks.of(who.agent_id)]


@router.delete(
    "/{webhook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete one of the caller's webhooks",
    responses=responses(401, 403, 404, 422),
)
async def delete_webhook(
    webhook_id: Annotated[str, Path(pattern=WEBHOOK_ID, description="the webhook's id")],
    who: Annotated[Caller, Depends(caller)],
    webhooks: Annotated[Webhooks, Depends(_webhooks)],
) -> None:
    """Stop POSTing to a webhook and forget it."""
    registration = webhooks.get(webhook_id)
    if registration is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no webhook {webhook_id!r}")
    if registration.agent != who.agent_id:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"webhook {webhook_id!r} is another agent's: a caller manages its own",
        )
    await webhooks.delete(registration)
