"""`StateMachine`: the states of one role in one conversation, and the acts that move them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from aclbus.acl import Performative
from aclbus.protocols.errors import OutOfSequence

__all__ = ["Direction", "StateMachine", "Transitions"]

Direction = Literal["in", "out"]
"""Whether the role receives (``"in"``) or sends (``"out"``) the act."""

Transitions = Mapping[str, Mapping[tuple[Direction, Performative], str]]
"""``{state: {(direction, act): next_state}}``; a state with no entry is final."""


class StateMachine:
    """The states of one role (initiator, participant) in one conversation with one peer.

    Args:
        protocol: The protocol id, for errors.
        role: The role, for errors (``"initiator"``).
        transitions: Which acts, received or sent, lead from each state to which next.
        initial: The first state.

    Example:
        ```python
        machine = StateMachine("fipa-request", "initiator", REQUEST_INITIATOR, "requested")
        machine.receive(Performative.AGREE)  # -> "agreed"
        ```
    """

    __slots__ = ("_transitions", "protocol", "role", "state")

    def __init__(self, protocol: str, role: str, transitions: Transitions, initial: str) -> None:
        self.protocol = protocol
        self.role = role
        self._transitions = transitions
        self.state = initial

    def __repr__(self) -> str:
        return f"<StateMachine {self.protocol} {self.role} {self.state!r}>"

    @property
    def done(self) -> bool:
        """True in a final state: no act leads anywhere from it."""
        return not self._transitions.get(self.state)

    def allows(self, direction: Direction, performative: Performative | str) -> bool:
        """Whether the act may be received (``"in"``) or sent (``"out"``) now."""
        steps = self._transitions.get(self.state, {})
        return (direction, Performative(performative)) in steps

    def receive(self, performative: Performative | str) -> str:
        """Take a received act; return the new state.

        Raises:
            OutOfSequence: The act is not allowed now (the state is unchanged).
        """
        return self._step("in", Performative(performative))

    def send(self, performative: Performative | str) -> str:
        """Take a sent act; return the new state.

        Raises:
            OutOfSequence: The act is not allowed now (the state is unchanged).
        """
        return self._step("out", Performative(performative))

    def finish(self, state: str) -> None:
        """End outside the table: ``"timed-out"`` or ``"cancelled"`` (a final state)."""
        self.state = state

    def _step(self, direction: Direction, act: Performative) -> str:
        after = self._transitions.get(self.state, {}).get((direction, act))
        if after is None:
            verb = "receive" if direction == "in" else "send"
            raise OutOfSequence(self.protocol, self.role, self.state, f"{verb} {act.value}")
        self.state = after
        return after
