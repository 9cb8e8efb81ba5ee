"""The settings of the auth plugin: ``ACLBUS_AUTH__*`` and the ``[auth]`` table."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from aclbus.settings import SectionSettings, section_config

__all__ = ["AuthSettings"]


class AuthSettings(SectionSettings):
    """Who a bus connects as, and the policy it is held to.

    At most one way to authenticate is set: ``user`` (with ``password``), ``token``,
    ``nkey_seed_file`` or ``creds_file``. With none, the plugin adds nothing to the
    connection.

    Attributes:
        user: User name, with ``password``; with a ``policy_file``, the policy's user this
            bus is (for the sender check, its reply inboxes and, on memory, the permissions),
            and then it may stand beside ``nkey_seed_file`` or ``creds_file``, which log in.
        password: Password (never logged, never shown in a repr).
        token: Token authentication (never logged).
        nkey_seed_file: An NKey user seed file (``SU...``).
        creds_file: A ``.creds`` file: a user JWT and its NKey seed (operator mode).
        policy_file: A policy (TOML, docs/security.md "The policy"), which ``aclbus policy
            render`` turns into the server's permissions. Set on a bus with ``user`` (the
            policy's user it is), the bus sends only as that user's agents, on every backend,
            and the memory backend refuses what the server would refuse that user.
    """

    model_config = section_config("auth")

    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    nkey_seed_file: Path | None = None
    creds_file: Path | None = None
    policy_file: Path | None = None
