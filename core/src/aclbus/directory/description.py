"""`AgentDescription`: what an agent tells the directory about itself."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator

from aclbus.errors import ACLBusError
from aclbus.subjects import validate_id

__all__ = ["MAX_TERM_LENGTH", "AgentDescription", "InvalidDescription"]

MAX_TERM_LENGTH = 128
"""The longest skill, protocol, ontology or version string."""


class InvalidDescription(ACLBusError, ValueError):
    """An agent description that is not valid (made by a program, or read from the directory).

    Attributes:
        agent_id: The agent it describes, when known.
        problem: What is wrong, field by field.
    """

    def __init__(self, problem: str, agent_id: object = None) -> None:
        self.agent_id = agent_id
        self.problem = problem
        who = f" of agent {agent_id!r}" if agent_id is not None else ""
        super().__init__(f"invalid agent description{who}: {problem}")


def _problem(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "description"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def _terms(values: tuple[str, ...], what: str) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for value in values:
        if not value or value != value.strip():
            raise ValueError(f"a {what} must be non-empty with no surrounding blanks: {value!r}")
        if len(value) > MAX_TERM_LENGTH:
            raise ValueError(f"a {what} is at most {MAX_TERM_LENGTH} characters: {value[:40]!r}…")
        seen.setdefault(value, None)  # the order of first appearance, without repeats
    return tuple(seen)


class AgentDescription(BaseModel):
    """An agent's entry in the directory: who it is, what it can do and how to talk to it.

    Made with keywords; a bad field raises `InvalidDescription` naming it. Skills, protocols
    and ontologies are non-empty strings (repeats are dropped, order kept); matching them in
    `Directory.search` is exact.

    Attributes:
        agent_id: The agent's id (its inbox is ``{prefix}.agent.{agent_id}``).
        skills: What it can do (``"translate"``, ``"math.sum"``).
        protocols: The interaction protocols it speaks (``"fipa-request"``,
            ``"fipa-contract-net"``).
        ontologies: The ontologies its messages' payloads follow.
        version: The agent's version.
        metadata: Anything else, as JSON values (owner, region, model name, …).

    Example:
        ```python
        AgentDescription(agent_id="translator", skills=("translate",), protocols=("fipa-request",))
        ```
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    agent_id: str
    skills: tuple[str, ...] = ()
    protocols: tuple[str, ...] = ()
    ontologies: tuple[str, ...] = ()
    version: str = Field(default="1.0", min_length=1, max_length=MAX_TERM_LENGTH)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InvalidDescription(_problem(exc), data.get("agent_id")) from None

    @field_validator("agent_id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        return validate_id(value, "agent id")

    @field_validator("skills")
    @classmethod
    def _check_skills(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _terms(value, "skill")

    @field_validator("protocols")
    @classmethod
    def _check_protocols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _terms(value, "protocol")

    @field_validator("ontologies")
    @classmethod
    def _check_ontologies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _terms(value, "ontology")

    def to_json(self) -> bytes:
        """The description as stored in the directory bucket (a JSON object)."""
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes, *, agent_id: str | None = None) -> AgentDescription:
        """Read a stored description; fields this version does not know are ignored.

        Other programs (or newer versions of aclbus) may write the directory, so a reader is
        lenient about extra fields and strict about the ones it knows.

        Args:
            data: The stored JSON.
            agent_id: The key it was stored under, for the error message.

        Raises:
            InvalidDescription: Not a JSON object, or a known field is not valid.
        """
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InvalidDescription(f"not JSON: {exc}", agent_id) from None
        if not isinstance(raw, dict):
            raise InvalidDescription(f"expected a JSON object, got {type(raw).__name__}", agent_id)
        known = {k: v for k, v in raw.items() if k in cls.model_fields}
        return cls(**known)

    def matches(
        self,
        *,
        skill: str | None = None,
        protocol: str | None = None,
        ontology: str | None = None,
    ) -> bool:
        """Whether the agent has the skill, protocol and ontology asked for (None: any)."""
        return (
            (skill is None or skill in self.skills)
            and (protocol is None or protocol in self.protocols)
            and (ontology is None or ontology in self.ontologies)
        )
