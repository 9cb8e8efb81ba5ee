"""FIPA Request (SC00026): ask an agent to do something, get its result.

``request`` → ``refuse`` | (``agree`` →) ``inform`` (done or result) | ``failure``; ``agree``
is optional. The initiator's steps have deadlines: the first answer within ``deadline``
(the request's ``reply_by``), the result within ``result_deadline`` after an ``agree``, the
answer to a ``cancel`` within the cancel's deadline.

Query (`aclbus.protocols.query`) is the same exchange with other acts; both are built on
`aclbus.protocols.action`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Final

from aclbus.acl import Performative
from aclbus.protocols.action import ActionInitiator, ActionResponder, Perform
from aclbus.protocols.conversation import FIPA_REQUEST, Outcome
from aclbus.protocols.machine import Transitions

if TYPE_CHECKING:
    from aclbus.agent import Agent

__all__ = [
    "REQUEST_INITIATOR",
    "REQUEST_PARTICIPANT",
    "Request",
    "RequestResponder",
    "request",
]

P = Performative

REQUEST_INITIATOR: Final[Transitions] = {
    "requested": {
        ("in", P.AGREE): "agreed",
        ("in", P.REFUSE): "refused",
        ("in", P.INFORM): "done",
        ("in", P.FAILURE): "failed",
        ("in", P.NOT_UNDERSTOOD): "not-understood",
    },
    "agreed": {("in", P.INFORM): "done", ("in", P.FAILURE): "failed"},
}
"""The initiator of a Request, from ``"requested"``."""

REQUEST_PARTICIPANT: Final[Transitions] = {
    "idle": {("in", P.REQUEST): "received"},
    "received": {
        ("out", P.AGREE): "agreed",
        ("out", P.REFUSE): "refused",
        ("out", P.INFORM): "done",
        ("out", P.FAILURE): "failed",
    },
    "agreed": {("out", P.INFORM): "done", ("out", P.FAILURE): "failed"},
}
"""The participant of a Request, from ``"idle"``."""


class Request(ActionInitiator):
    """The initiator of one FIPA Request conversation.

    Args:
        agent: The requesting agent (started here if it is not running).
        receiver: The agent asked to act.
        payload: What to do.
        deadline: Seconds for the first answer (``agree``, ``refuse`` or the result); the
            request's ``reply_by``.
        result_deadline: Seconds for the result after an ``agree``; None: ``deadline``.
        conversation_id: The conversation's id; None makes a new one.
        **fields: Other fields of the request (``message_type``, ``ontology``, ``priority``).

    Raises:
        InvalidIdentifier: ``receiver`` or ``conversation_id`` is not a valid id.
        InvalidDeadline: A deadline is not a positive, finite number of seconds.
        ConfigurationError: ``fields`` sets a field the protocol sets itself.

    Example:
        ```python
        outcome = await Request(agent, "worker", {"task": "resize"}, deadline=2.0).run()
        print(outcome.payload)
        ```
    """

    _protocol: ClassVar[str] = FIPA_REQUEST
    _transitions: ClassVar[Transitions] = REQUEST_INITIATOR
    _initial: ClassVar[str] = "requested"

    def __init__(
        self,
        agent: Agent,
        receiver: str,
        payload: Any = None,
        *,
        deadline: float,
        result_deadline: float | None = None,
        conversation_id: str | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(
            agent,
            P.REQUEST,
            receiver,
            payload,
            deadline=deadline,
            result_deadline=result_deadline,
            conversation_id=conversation_id,
            fields=fields,
        )


async def request(
    agent: Agent,
    receiver: str,
    payload: Any = None,
    *,
    deadline: float,
    result_deadline: float | None = None,
    **fields: Any,
) -> Outcome:
    """Run a FIPA Request to its end; see `Request` for the arguments.

    Example: ``await request(agent, "worker", job, deadline=2.0)``. Raises the errors of
    `Request.result`.
    """
    return await Request(
        agent, receiver, payload, deadline=deadline, result_deadline=result_deadline, **fields
    ).run()


class RequestResponder(ActionResponder):
    """The participant of FIPA Request on an agent: runs ``perform`` for each request.

    Each request runs in a task of its own (two conversations never wait for each other).
    ``decide(msg)`` may raise `Refused` to refuse; then, with ``agree=True``, an ``agree`` is
    sent; then ``perform(msg)`` runs: what it returns is sent as the ``inform``'s payload;
    `Refused` it raises is a ``refuse`` (a ``failure`` after an ``agree``); any other
    exception, or running past ``timeout``, is a ``failure``. A ``cancel`` stops the task and
    is answered ``inform`` (``{"cancelled": true}``).

    Args:
        agent: The responding agent.
        perform: ``perform(msg)``, plain or async: the action; returns the result's payload.
        decide: ``decide(msg)``, plain or async: raise `Refused` to refuse; None: accept all.
        agree: Send ``agree`` before performing (for long actions).
        timeout: Seconds ``perform`` may take; then the answer is ``failure``
            (``{"reason": "timeout"}``). None: no limit.

    Raises:
        InvalidDeadline: ``timeout`` is not a positive number of seconds.
        TypeError: ``perform`` or ``decide`` is not callable.

    Example:
        ```python
        async def resize(msg: ACLMessage) -> dict[str, int]:
            return {"width": msg.payload["width"] // 2}

        RequestResponder(worker, resize, agree=True, timeout=30.0)
        ```
    """

    def __init__(
        self,
        agent: Agent,
        perform: Perform,
        *,
        decide: Perform | None = None,
        agree: bool = False,
        timeout: float | None = None,
    ) -> None:
        super().__init__(
            agent,
            perform,
            protocol=FIPA_REQUEST,
            opening=(P.REQUEST,),
            transitions=REQUEST_PARTICIPANT,
            decide=decide,
            agree=agree,
            timeout=timeout,
        )
