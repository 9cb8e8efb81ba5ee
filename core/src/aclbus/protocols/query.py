"""FIPA Query (SC00027): ask an agent whether something is true, or for the objects it knows.

``query-if`` | ``query-ref`` → ``refuse`` | (``agree`` →) ``inform`` (``inform-if``,
``inform-ref`` taken too) | ``failure``. The same exchange, deadlines and cancel as FIPA
Request (`aclbus.protocols.request`), with the query acts (`aclbus.protocols.action`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal

from aclbus.acl import Performative
from aclbus.protocols.action import ActionInitiator, ActionResponder, Perform
from aclbus.protocols.conversation import FIPA_QUERY, Outcome
from aclbus.protocols.machine import Transitions

if TYPE_CHECKING:
    from aclbus.agent import Agent

__all__ = ["QUERY_INITIATOR", "QUERY_PARTICIPANT", "Query", "QueryResponder", "query"]

P = Performative

_RESULTS: Final = (P.INFORM, P.INFORM_IF, P.INFORM_REF)

QUERY_INITIATOR: Final[Transitions] = {
    "queried": {
        ("in", P.AGREE): "agreed",
        ("in", P.REFUSE): "refused",
        ("in", P.FAILURE): "failed",
        ("in", P.NOT_UNDERSTOOD): "not-understood",
        **{("in", act): "done" for act in _RESULTS},
    },
    "agreed": {("in", P.FAILURE): "failed", **{("in", act): "done" for act in _RESULTS}},
}
"""The initiator of a Query, from ``"queried"``."""

QUERY_PARTICIPANT: Final[Transitions] = {
    "idle": {("in", P.QUERY_IF): "received", ("in", P.QUERY_REF): "received"},
    "received": {
        ("out", P.AGREE): "agreed",
        ("out", P.REFUSE): "refused",
        ("out", P.INFORM): "done",
        ("out", P.FAILURE): "failed",
    },
    "agreed": {("out", P.INFORM): "done", ("out", P.FAILURE): "failed"},
}
"""The participant of a Query, from ``"idle"``."""


class Query(ActionInitiator):
    """The initiator of one FIPA Query conversation.

    Args:
        agent: The querying agent (started here if it is not running).
        receiver: The agent asked.
        payload: The proposition (``kind="if"``) or the reference expression (``"ref"``).
        kind: ``"ref"`` sends ``query-ref`` (which objects?), ``"if"`` sends ``query-if``
            (is it true?).
        deadline: Seconds for the first answer; the query's ``reply_by``.
        result_deadline: Seconds for the answer after an ``agree``; None: ``deadline``.
        conversation_id: The conversation's id; None makes a new one.
        **fields: Other fields of the query (``message_type``, ``ontology``, ``language``).

    Raises:
        InvalidIdentifier: ``receiver`` or ``conversation_id`` is not a valid id.
        InvalidDeadline: A deadline is not a positive, finite number of seconds.
        ConfigurationError: ``fields`` sets a field the protocol sets itself.
        ValueError: ``kind`` is neither ``"if"`` nor ``"ref"``.

    Example:
        ```python
        outcome = await Query(agent, "catalog", {"sku": "A1"}, deadline=1.0).run()
        ```
    """

    _protocol: ClassVar[str] = FIPA_QUERY
    _transitions: ClassVar[Transitions] = QUERY_INITIATOR
    _initial: ClassVar[str] = "queried"

    def __init__(
        self,
        agent: Agent,
        receiver: str,
        payload: Any = None,
        *,
        kind: Literal["if", "ref"] = "ref",
        deadline: float,
        result_deadline: float | None = None,
        conversation_id: str | None = None,
        **fields: Any,
    ) -> None:
        if kind not in ("if", "ref"):
            raise ValueError(f"kind must be 'if' or 'ref', not {kind!r}")
        super().__init__(
            agent,
            P.QUERY_IF if kind == "if" else P.QUERY_REF,
            receiver,
            payload,
            deadline=deadline,
            result_deadline=result_deadline,
            conversation_id=conversation_id,
            fields=fields,
        )


async def query(
    agent: Agent,
    receiver: str,
    payload: Any = None,
    *,
    kind: Literal["if", "ref"] = "ref",
    deadline: float,
    result_deadline: float | None = None,
    **fields: Any,
) -> Outcome:
    """Run a FIPA Query to its end; see `Query` for the arguments.

    Example: ``await query(agent, "catalog", {"sku": "A1"}, deadline=1.0)``.
    Raises the errors of `Request.result`.
    """
    return await Query(
        agent,
        receiver,
        payload,
        kind=kind,
        deadline=deadline,
        result_deadline=result_deadline,
        **fields,
    ).run()


class QueryResponder(ActionResponder):
    """The participant of FIPA Query on an agent: answers each query with ``answer(msg)``.

    It behaves as `RequestResponder` (``decide``, ``agree``, ``timeout``, cancel), with the
    query acts; the answer goes out as ``inform`` (``msg.performative`` tells ``query-if``
    from ``query-ref``).

    Args:
        agent: The responding agent.
        answer: ``answer(msg)``, plain or async: returns the answer's payload (for
            ``query-if``, a truth value); raises `Refused` to refuse.
        decide: ``decide(msg)``: raise `Refused` to refuse before answering; None: accept all.
        agree: Send ``agree`` before answering.
        timeout: Seconds ``answer`` may take; then ``failure``. None: no limit.

    Raises:
        InvalidDeadline: ``timeout`` is not a positive number of seconds.
        TypeError: ``answer`` or ``decide`` is not callable.
    """

    def __init__(
        self,
        agent: Agent,
        answer: Perform,
        *,
        decide: Perform | None = None,
        agree: bool = False,
        timeout: float | None = None,
    ) -> None:
        super().__init__(
            agent,
            answer,
            protocol=FIPA_QUERY,
            opening=(P.QUERY_IF, P.QUERY_REF),
            transitions=QUERY_PARTICIPANT,
            decide=decide,
            agree=agree,
            timeout=timeout,
        )
