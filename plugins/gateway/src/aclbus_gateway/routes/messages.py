"""Send, broadcast and request, each as the caller's own agent."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.exceptions import RequestValidationError

from aclbus import ACLMessage
from aclbus_gateway.auth import Caller, caller
from aclbus_gateway.bodies import Ack, BroadcastBody, RequestBody, SendBody, Sent, to_message
from aclbus_gateway.errors import responses
from aclbus_gateway.state import Gateway, current_gateway

__all__ = ["router"]

router = APIRouter(prefix="/communication", tags=["messages"])

Speaking = Annotated[Gateway, Depends(current_gateway)]
Calling = Annotated[Caller, Depends(caller)]


@router.post(
    "/send",
    summary="Send a message to agents' inboxes",
    responses=responses(400, 401, 403, 413, 422, 503, 504),
)
async def send(body: SendBody, gateway: Speaking, who: Calling) -> Sent:
    """Send a message to each receiver's durable inbox; answers the broker's acks."""
    msg = to_message(body, who.agent_id)
    acks = await gateway.bus.send(msg)
    return Sent(
        message_id=msg.message_id,
        acks=[Ack.of(ack, receiver) for ack, receiver in zip(acks, msg.all_receivers, strict=True)],
    )


@router.post(
    "/broadcast",
    summary="Send a message to every agent",
    responses=responses(400, 401, 403, 413, 422, 503, 504),
)
async def broadcast(body: BroadcastBody, gateway: Speaking, who: Calling) -> Sent:
    """Publish a message on the broadcast subject: every started agent gets it."""
    msg = to_message(body, who.agent_id)
    ack = await gateway.bus.broadcast(msg)
    return Sent(message_id=msg.message_id, acks=[Ack.of(ack)])


@router.post(
    "/request",
    summary="Ask an agent and wait for its reply",
    responses=responses(400, 401, 403, 413, 422, 502, 503, 504),
)
async def request(body: RequestBody, gateway: Speaking, who: Calling) -> ACLMessage:
    """Send a request to ``receiver_id`` and answer its reply envelope.

    The reply is answered with 200 whatever its performative: a ``refuse``, ``failure`` or
    ``not-understood`` is the agent's answer, not an HTTP error. 503 at once when no agent
    serves ``receiver_id``; 504 when none replies within ``timeout``.
    """
    limit = gateway.settings.max_request_timeout
    if body.timeout is not None and body.timeout > limit:
        raise RequestValidationError(
            [
                {
                    "type": "less_than_equal",
                    "loc": ("body", "timeout"),
                    "msg": f"Input should be less than or equal to {limit} "
                    "(ACLBUS_GATEWAY__MAX_REQUEST_TIMEOUT)",
                }
            ]
        )
    msg = to_message(body, who.agent_id)
    timeout = body.timeout if body.timeout is not None else gateway.bus.settings.request_timeout
    return await gateway.bus.request(msg, timeout=min(timeout, limit))
