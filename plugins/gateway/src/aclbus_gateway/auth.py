"""Who calls: a bearer token maps to the one agent the caller may act as."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from aclbus_gateway.state import Gateway, current_gateway

__all__ = ["Caller", "caller"]

_bearer = HTTPBearer(auto_error=False)


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
    """The caller of a request (a FastAPI dependency): 401 without a known bearer token."""
    if credentials is not None:
        presented = credentials.credentials.encode()
        for agent_id, token in gateway.settings.tokens.items():
            if hmac.compare_digest(presented, token.get_secret_value().encode()):
                return Caller(agent_id)
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="a bearer token of a known agent is required",
        headers={"WWW-Authenticate": "Bearer"},
    )
