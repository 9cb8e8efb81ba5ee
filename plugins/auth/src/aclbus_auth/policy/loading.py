"""Reading a policy file, and checking what the model alone cannot: that its names agree.

Every refusal is a `PolicyError` naming the file and the place in it (``users.worker.agents[0]``)
with what is wrong there.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from aclbus.errors import ConfigurationError
from aclbus_auth.policy.model import Policy

__all__ = ["PolicyError", "check_policy", "load_policy", "parse_policy"]


class PolicyError(ConfigurationError):
    """A policy that cannot be used: the file, the place in it, and what is wrong there.

    Attributes:
        source: The file (or what the text came from).
        place: Where in it, dotted (``agents.worker.send[1]``); empty for the whole file.
        problem: What is wrong.
    """

    def __init__(self, source: str, place: str, problem: str) -> None:
        self.source = source
        self.place = place
        self.problem = problem
        where = f"{source}: {place}" if place else source
        super().__init__(f"policy {where}: {problem}")


def _place(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-after", "[")):  # pydantic's validator steps
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_policy(data: Mapping[str, Any], source: str = "<policy>") -> Policy:
    """The policy in ``data`` (a parsed TOML document), checked.

    Raises:
        PolicyError: The first problem found, with its place.
    """
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "missing":
            message = "required field missing"
        raise PolicyError(source, _place(tuple(error["loc"])), message) from None
    check_policy(policy, source)
    return policy


def load_policy(path: Path | str) -> Policy:
    """Read and check the policy file at ``path``.

    Raises:
        PolicyError: The file cannot be read, is not TOML, or has a problem (with its place).
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(source, "", f"cannot be read ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(source, "", f"is not valid TOML: {exc}") from None
    return parse_policy(data, source)


def check_policy(policy: Policy, source: str = "<policy>") -> None:
    """Check that the policy's names agree with each other.

    Every agent a user acts as and every agent a grant names is one of ``[agents]`` (or
    ``*``); no agent is acted as by two users, and no NKey or certificate identity is given
    to two users; every user acts as an agent or is an admin.

    Raises:
        PolicyError: The first disagreement, with its place.
    """
    known = set(policy.agents)
    listed = ", ".join(sorted(known)) or "none"
    acted_by: dict[str, str] = {}
    identities: dict[tuple[str, str], str] = {}
    for name, user in policy.users.items():
        if not user.agents and not user.admin:
            raise PolicyError(
                source, f"users.{name}", "acts as no agent: give agents, or admin = true"
            )
        for i, agent in enumerate(user.agents):
            place = f"users.{name}.agents[{i}]"
            if agent not in known:
                raise PolicyError(
                    source,
                    place,
                    f"unknown agent {agent!r}: add [agents.{agent}] (agents: {listed})",
                )
            if agent in acted_by:
                raise PolicyError(
                    source,
                    place,
                    f"agent {agent!r} is already acted as by user {acted_by[agent]!r}: one user "
                    "per agent (its instances share that user's credentials)",
                )
            acted_by[agent] = name
        identity = (user.method, user.nkey or user.certificate or name)
        if identity in identities and user.method != "password":
            raise PolicyError(
                source,
                f"users.{name}.{user.method}",
                f"the same {user.method} as user {identities[identity]!r}: the server could not "
                "tell the two users apart",
            )
        identities[identity] = name
    for agent, grants in policy.agents.items():
        for field in ("send", "request", "consume"):
            for i, target in enumerate(getattr(grants, field)):
                if target != "*" and target not in known:
                    raise PolicyError(
                        source,
                        f"agents.{agent}.{field}[{i}]",
                        f"unknown agent {target!r} (agents: {listed})",
                    )
