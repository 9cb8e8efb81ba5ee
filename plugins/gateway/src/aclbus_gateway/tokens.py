"""The bearer tokens: which agent a presented token stands for, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from aclbus.errors import ConfigurationError, InvalidIdentifier
from aclbus.subjects import validate_id

__all__ = ["TokenTable", "read_tokens_file"]


def read_tokens_file(path: Path) -> dict[str, SecretStr]:
    """The agent-to-token mapping of a TOML (``agent = "token"``) or ``.json`` file.

    Raises:
        ConfigurationError: The file cannot be read or parsed, or is not a flat mapping of
            strings (the message names the file, never a token).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"ACLBUS_GATEWAY__TOKENS_FILE {str(path)!r} cannot be read: {exc.strerror}"
        ) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError both are
        # The parser's message may quote a line of the file, which may hold a token.
        raise ConfigurationError(
            f"ACLBUS_GATEWAY__TOKENS_FILE {str(path)!r} is not valid "
            f"{'JSON' if path.suffix == '.json' else 'TOML'} ({type(exc).__name__})"
        ) from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ConfigurationError(
            f"ACLBUS_GATEWAY__TOKENS_FILE {str(path)!r} must map agent ids to token strings "
            '(agent = "token")'
        )
    return {agent: SecretStr(token) for agent, token in data.items()}


class TokenTable:
    """Bearer tokens by agent id; `agent_for` tells whose a presented token is.

    Args:
        tokens: The token of each agent.

    Raises:
        ConfigurationError: An agent id is not a valid id, a token is empty, or two agents
            share a token (the message names the agents, never a token).
    """

    def __init__(self, tokens: Mapping[str, SecretStr]) -> None:
        digests: dict[bytes, str] = {}
        for agent_id, token in tokens.items():
            try:
                validate_id(agent_id, "agent")
            except InvalidIdentifier as exc:
                raise ConfigurationError(f"gateway tokens: {exc}") from None
            secret = token.get_secret_value()
            if not secret:
                raise ConfigurationError(f"gateway tokens: the token of {agent_id!r} is empty")
            digest = _digest(secret)
            if digest in digests:
                raise ConfigurationError(
                    f"gateway tokens: {digests[digest]!r} and {agent_id!r} have the same token"
                )
            digests[digest] = agent_id
        # Digests, not the tokens: equal-length values to compare, and no token kept around.
        self._digests = tuple(digests.items())

    def __repr__(self) -> str:
        return f"TokenTable(agents={sorted(self.agents)!r})"

    def __len__(self) -> int:
        return len(self._digests)

    @property
    def agents(self) -> frozenset[str]:
        """The agents that have a token."""
        return frozenset(agent for _, agent in self._digests)

    def agent_for(self, presented: str) -> str | None:
        """The agent whose token ``presented`` is, or None.

        Every entry is compared, with `hmac.compare_digest`, whatever matches first: how long
        it takes does not tell which agent (or how many) a token is close to.
        """
        digest = _digest(presented)
        found: str | None = None
        for known, agent_id in self._digests:
            if hmac.compare_digest(digest, known):
                found = agent_id
        return found


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
