"""The settings of the gateway: ``ACLBUS_GATEWAY__*`` and the ``[gateway]`` table."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from aclbus.settings import SectionSettings, section_config

__all__ = ["GatewaySettings"]


class GatewaySettings(SectionSettings):
    """How ``aclbus serve`` runs, read from ``ACLBUS_GATEWAY__*``, ``.env`` and ``aclbus.toml``.

    Attributes:
        host: The address uvicorn listens on; loopback unless you mean to expose it.
        port: The port uvicorn listens on.
        tokens: Bearer tokens by agent id: a caller presenting ``tokens[a]`` acts as agent
            ``a``, and only as ``a``.
        tokens_file: A TOML or JSON file of the same mapping (agent id to token), read at
            start; kept out of the settings so the tokens stay out of the environment.
    """

    model_config = section_config("gateway")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    tokens: dict[str, SecretStr] = Field(default_factory=dict)
    tokens_file: Path | None = None
