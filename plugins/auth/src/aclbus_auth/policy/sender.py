"""The sender check: a bus with a policy sends only as the agents its user may act as.

The server's permissions say where a connection may publish, not what a message says about
its sender: a process with an agent's credentials could still write another agent's id in
``sender_id``. `SenderCheck` refuses such a message locally, before it is encoded, on every
backend, with `PermissionDenied`. It stops a mistaken process (a wrong id in code or
configuration); a hostile process does not run this middleware, and only signed envelopes
(the signing plugin) let a receiver tell.
"""

from __future__ import annotations

from aclbus.acl import ACLMessage
from aclbus.errors import PermissionDenied
from aclbus.middleware import Middleware, Outgoing, PublishNext, RequestNext
from aclbus.specs import PublishAck

__all__ = ["SenderCheck"]


class SenderCheck(Middleware):
    """Refuses to publish or request with a ``sender_id`` the bus' user may not act as.

    Args:
        user: The policy's user the bus connects as (named in the refusal).
        agents: The agents that user may act as.
    """

    def __init__(self, user: str, agents: frozenset[str]) -> None:
        self.user = user
        self.agents = agents

    def _check(self, out: Outgoing) -> None:
        sender = out.message.sender_id
        if sender not in self.agents:
            raise PermissionDenied(f"send as {sender!r} (user {self.user!r})", out.subject)

    async def publish(self, out: Outgoing, call_next: PublishNext) -> PublishAck:
        """Refuse a message from an agent the user may not act as; else pass it on."""
        self._check(out)
        return await call_next(out)

    async def request(self, out: Outgoing, call_next: RequestNext) -> ACLMessage:
        """Refuse a request from an agent the user may not act as; else pass it on."""
        self._check(out)
        return await call_next(out)
