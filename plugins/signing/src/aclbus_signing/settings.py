"""The settings of the signing plugin: ``ACLBUS_SIGNING__*`` and the ``[signing]`` table."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from aclbus.settings import SectionSettings, section_config

__all__ = ["Mode", "SigningSettings"]

Mode = Literal["off", "warn", "require"]
"""``off``: the plugin does nothing; ``warn``: sign, verify, log what fails and handle it
anyway; ``require``: sign, verify, dead-letter what fails (reason ``bad-signature``)."""


class SigningSettings(SectionSettings):
    """How a bus signs what its agents send and checks what they receive.

    Attributes:
        mode: ``off`` (the default: no middleware at all), ``warn`` or ``require``.
        key_file: The private key the bus' agents sign with (an NKey user seed ``SU…``, a
            PEM Ed25519 key, or a 32-byte seed in base64url; see `aclbus_signing.keys`).
            None: its agents send unsigned, unless ``agent_key_files`` names them.
        agent_key_files: A key per agent id, for a bus that hosts agents with keys of their
            own (``[signing.agent_key_files] alice = "alice.seed"``); over ``key_file``.
        keys_file: The pinned public keys: a TOML file of ``agent_id = ["key id", ...]``
            (two keys for an agent during a rotation). An agent listed there is checked
            against that list only, never the directory.
        directory: Also look senders' keys up in the directory (the ``signing_keys`` of
            their `aclbus.AgentDescription` metadata) when the pinned file does not list them.
        directory_ttl: Seconds a key list read from the directory is used before it is read
            again (a key id not in it makes it be read again, at most once a second).
        max_age: Seconds a message may be old (its ``ce-time``) to be accepted: the timestamp
            window. Set it above the longest backlog an inbox may hold.
        max_skew: Seconds its ``ce-time`` may be ahead of the receiver's clock.
        seen_ids: Message ids remembered to refuse a replay (within ``max_age`` +
            ``max_skew``), per bus; the oldest is forgotten first when full.
    """

    model_config = section_config("signing")

    mode: Mode = "off"
    key_file: Path | None = None
    agent_key_files: dict[str, Path] = Field(default_factory=dict)
    keys_file: Path | None = None
    directory: bool = False
    directory_ttl: float = Field(default=60.0, gt=0)
    max_age: float = Field(default=600.0, gt=0)
    max_skew: float = Field(default=60.0, ge=0)
    seen_ids: int = Field(default=100_000, ge=1)
