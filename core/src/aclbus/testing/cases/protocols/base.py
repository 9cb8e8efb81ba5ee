"""What the FIPA protocol cases share: their base class, a listening agent, a bound on waits."""

from __future__ import annotations

from typing import ClassVar

from aclbus.acl import ACLMessage
from aclbus.backend import Capabilities
from aclbus.bus import Bus
from aclbus.testing.cases.base import BusTestcase
from aclbus.testing.collector import Collector

__all__ = ["WAIT", "ProtocolTestcase", "listen"]

WAIT = 3.0
"""The wall-clock bound, in seconds, of any single wait in the protocol cases."""


def listen(bus: Bus, agent_id: str) -> Collector[ACLMessage]:
    """Give ``agent_id`` a catch-all handler recording what it gets (and answering nothing)."""
    got: Collector[ACLMessage] = Collector()

    @bus.agent(agent_id).on()
    async def record(msg: ACLMessage) -> None:
        got.add(msg)

    return got


class ProtocolTestcase(BusTestcase):
    """A case of the FIPA protocols: they need a persistent, acknowledging backend."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, ack=True)
