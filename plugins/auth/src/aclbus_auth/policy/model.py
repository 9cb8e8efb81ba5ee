"""The policy file's model: principals (server users) and what each agent may do.

A policy is TOML (`aclbus_auth.policy.loading.load_policy`); docs/security.md ("The policy")
documents every field with an example. Ids follow `aclbus.subjects`: an agent or group id is
one subject token, so a grant names an id or ``*`` (every id); topics are dotted and take the
NATS wildcards ``*`` (one token) and ``>`` (the rest). Partial globs (``worker-*``) cannot be
expressed in server permissions and are refused.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from aclbus.subjects import validate_id, validate_topic

__all__ = ["AgentGrants", "DlqAccess", "Policy", "Responses", "User"]

_ENV_REFERENCE = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*")
_NKEY_USER = re.compile(r"U[A-Z2-7]{55}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _id_or_all(value: str) -> str:
    return value if value == "*" else validate_id(value, "id", remember=False)


def _topic_pattern(value: str) -> str:
    return validate_topic(value, pattern=True)


def _env_reference(value: str) -> str:
    if not _ENV_REFERENCE.fullmatch(value):
        raise ValueError(
            "a password is given as a reference to an environment variable of the server "
            "($AGENT_A_PASSWORD), which nats-server resolves; a password in the policy file "
            "would be printed by every render"
        )
    return value


def _nkey(value: str) -> str:
    if not _NKEY_USER.fullmatch(value):
        raise ValueError("expected a public NKey of a user: 'U' and 55 base32 characters")
    return value


IdOrAll = Annotated[str, AfterValidator(_id_or_all)]
TopicPattern = Annotated[str, AfterValidator(_topic_pattern)]


class DlqAccess(StrEnum):
    """What an agent may do with the dead-letter queue beyond storing its own failures."""

    NONE = "none"
    READ = "read"
    """List and inspect dead letters (``STREAM.MSG.GET`` on the DLQ stream)."""
    MANAGE = "manage"
    """Read, and delete or purge them (replaying sends as the agent's own grants allow)."""


class Responses(BaseModel):
    """nats-server's ``allow_responses``: replies to requests received, on their reply subject.

    Attributes:
        max: Replies per request received (a streamed reply needs more than one).
        expires: How long after the request they may be sent: ``"2m"``, ``"30s"``, ``"500ms"``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max: int = Field(default=1, ge=1)
    expires: str = "2m"

    @property
    def seconds(self) -> float:
        """``expires`` in seconds."""
        found = _DURATION.fullmatch(self.expires)
        assert found is not None  # checked by the validator
        return float(found.group(1)) * _SECONDS[found.group(2)]

    @model_validator(mode="after")
    def _check_expires(self) -> Self:
        if not _DURATION.fullmatch(self.expires):
            raise ValueError(f"expires={self.expires!r}: expected a duration like '2m' or '30s'")
        return self


class User(BaseModel):
    """A principal: one server user, how it authenticates, and the agents it may act as.

    Exactly one of ``password``, ``nkey`` and ``certificate`` says how it authenticates.

    Attributes:
        password: A reference to an environment variable of nats-server
            (``$AGENT_A_PASSWORD``); the user's name is its key in ``[users]``.
        nkey: The user's public NKey (``U...``): it signs the server's nonce with its seed.
        certificate: The identity nats-server's ``verify_and_map`` takes from the client
            certificate: its subject (``CN=worker-1,O=Example``) or a SAN (an e-mail or DNS
            name).
        agents: The agents this user may act as: it may send only as them, and consume only
            what their grants allow.
        admin: Provisions the streams and buckets and may do everything (an operator's or
            deployment job's principal, never an agent's).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    password: Annotated[str, AfterValidator(_env_reference)] | None = None
    nkey: Annotated[str, AfterValidator(_nkey)] | None = None
    certificate: str | None = Field(default=None, min_length=1)
    agents: tuple[Annotated[str, AfterValidator(validate_id)], ...] = ()
    admin: bool = False

    @property
    def method(self) -> Literal["password", "nkey", "certificate"]:
        """How the user authenticates."""
        if self.password is not None:
            return "password"
        return "nkey" if self.nkey is not None else "certificate"

    @model_validator(mode="after")
    def _one_method(self) -> Self:
        given = [m for m in ("password", "nkey", "certificate") if getattr(self, m) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of password, nkey or certificate"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.admin and self.agents:
            raise ValueError("an admin acts as no agent: give agents to another user")
        return self


class AgentGrants(BaseModel):
    """What one agent may do, beyond what every agent may.

    Every agent may consume its own inbox and priority lane, answer its request subject,
    receive broadcasts, store its own dead letters and use the bus' shared buckets (groups,
    directory, presence).

    Attributes:
        send: Agents whose inbox (and priority lane) it may send to; ``*``: every agent.
        groups: Groups it may send to.
        join: Groups it may join (and so receive).
        publish: Topics (patterns) it may publish to.
        subscribe: Topic patterns it may subscribe to; its subscriptions use these very
            patterns (a consumer's name is a digest of its pattern).
        broadcast: Whether it may broadcast (every agent receives broadcasts).
        request: Agents (services) whose request subject it may call; ``*``: any.
        consume: Other agents whose inbox it may consume, through their own inbox and lane
            consumers (not acting as them: that is a user's ``agents``).
        dlq: ``none``, ``read`` or ``manage`` the dead-letter queue.
        shared_maps: Names of the shared maps (`Bus.shared_map`) it uses.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    send: tuple[IdOrAll, ...] = ()
    groups: tuple[IdOrAll, ...] = ()
    join: tuple[IdOrAll, ...] = ()
    publish: tuple[TopicPattern, ...] = ()
    subscribe: tuple[TopicPattern, ...] = ()
    broadcast: bool = False
    request: tuple[IdOrAll, ...] = ()
    consume: tuple[IdOrAll, ...] = ()
    dlq: DlqAccess = DlqAccess.NONE
    shared_maps: tuple[Annotated[str, AfterValidator(validate_id)], ...] = ()


class Policy(BaseModel):
    """A whole policy: the deployment's prefix, its users and its agents' grants.

    Attributes:
        prefix: The deployment's ``ACLBUS_SUBJECT_PREFIX``.
        responses: The ``allow_responses`` of every agent's user.
        users: The principals, by user name.
        agents: The agents' grants, by agent id; every agent a user acts as is listed here.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: Annotated[str, AfterValidator(validate_id)] = "aclbus"
    responses: Responses = Field(default_factory=Responses)
    users: dict[Annotated[str, AfterValidator(validate_id)], User] = Field(min_length=1)
    agents: dict[Annotated[str, AfterValidator(validate_id)], AgentGrants] = Field(
        default_factory=dict
    )

    def agents_of(self, user: str) -> tuple[str, ...]:
        """The agents ``user`` may act as.

        Raises:
            KeyError: No such user.
        """
        return self.users[user].agents
