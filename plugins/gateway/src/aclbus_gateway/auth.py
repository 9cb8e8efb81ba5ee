"""Who calls: a bearer token maps to the one agent the caller may act as."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from aclbus_gateway.state import Gateway, current_gateway

__all__ = ["Caller", "caller"]

_bearer = HTTPBearer(auto_error=False, description="A token of ACLBUS_GATEWAY__TOKENS.")


@dataclass(frozen=True)
class Caller:
    """An authenticated caller.

    Attributes:
        agent_id: The agent the caller acts as.
    """

    agent_id: str


def caller(
    gateway: Annotated[Gateway, Depends(current_gateway)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """The caller of a request (a FastAPI dependency).

    Raises:
        HTTPException: 401 without a bearer token of a known agent; 403 when the policy of
            the gateway's bus user does not let it act as that agent.
    """
    agent_id = None if credentials is None else gateway.tokens.agent_for(credentials.credentials)
    if agent_id is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="a bearer token of a known agent is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if gateway.allowed_agents is not None and agent_id not in gateway.allowed_agents:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"the gateway's policy user may not act as agent {agent_id!r}",
        )
    return Caller(agent_id)
