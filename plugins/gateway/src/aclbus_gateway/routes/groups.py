"""Join and leave multicast groups, as the caller's agent hosted on the gateway."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, status
from pydantic import BaseModel

from aclbus.subjects import validate_id
from aclbus_gateway.auth import Caller, caller
from aclbus_gateway.bodies import ID_PATTERN
from aclbus_gateway.errors import responses
from aclbus_gateway.state import Gateway, current_gateway

__all__ = ["Membership", "router"]

router = APIRouter(prefix="/communication/groups", tags=["groups"])

GroupName = Annotated[str, Path(pattern=ID_PATTERN, description="The group (an aclbus id).")]


class Membership(BaseModel):
    """A caller's membership of a group.

    Attributes:
        agent_id: The caller's agent.
        group: The group.
        member: Whether the agent is a member now.
    """

    agent_id: str
    group: str
    member: bool


@router.post(
    "/{group}/join",
    summary="Join a group",
    responses=responses(401, 403, 422, 501, 503, 504),
)
async def join(
    group: GroupName,
    gateway: Annotated[Gateway, Depends(current_gateway)],
    who: Annotated[Caller, Depends(caller)],
) -> Membership:
    """Join ``group`` as the caller's agent, which the gateway hosts (started on first use).

    From then on a multicast to the group reaches the agent on the gateway. Joining twice
    does nothing.
    """
    validate_id(group, "group")
    agent = await gateway.agent(who.agent_id)
    await agent.join(group)
    return Membership(agent_id=who.agent_id, group=group, member=True)


@router.delete(
    "/{group}/leave",
    summary="Leave a group",
    responses=responses(401, 403, 404, 422, 503, 504),
)
async def leave(
    group: GroupName,
    gateway: Annotated[Gateway, Depends(current_gateway)],
    who: Annotated[Caller, Depends(caller)],
) -> Membership:
    """Leave ``group``: nothing sent to it from now on reaches the caller's agent.

    404 when the caller's agent on this gateway is not a member.
    """
    validate_id(group, "group")
    agent = gateway.bus.agents.get(who.agent_id)
    if agent is None or group not in agent.groups:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"agent {who.agent_id!r} is not a member of group {group!r} on this gateway",
        )
    await agent.leave(group)
    return Membership(agent_id=who.agent_id, group=group, member=False)
