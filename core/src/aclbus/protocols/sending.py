"""Sending on behalf of a protocol when nobody can take an error: it is logged, not raised."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aclbus.acl import ACLMessage
from aclbus.dlq import redact

if TYPE_CHECKING:
    from aclbus.agent import Agent

__all__ = ["send_quietly"]

log = logging.getLogger("aclbus.protocols")


async def send_quietly(agent: Agent, msg: ACLMessage) -> bool:
    """Send ``msg``; log (not raise) when it cannot be sent. Return whether it was sent."""
    try:
        await agent.bus.send(msg)
    except Exception as exc:
        log.warning(
            "agent %s: could not send %s: %s: %s",
            agent.id,
            msg.performative.value,
            type(exc).__name__,
            redact(str(exc)),
        )
        return False
    return True
