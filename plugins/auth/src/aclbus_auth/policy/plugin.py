"""The policy's part of the auth plugin: the hookimpls, and `PolicyPlugin` for settings in code.

With ``ACLBUS_AUTH__POLICY_FILE`` unset the plugin adds nothing: no permissions, no
middleware. With it set, ``ACLBUS_AUTH__USER`` names the policy's user the bus connects as;
the bus then sends only as that user's agents (`SenderCheck`), and a backend that enforces
permissions itself (memory) is held to the user's rendered permissions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from aclbus.errors import ConfigurationError
from aclbus.middleware import MiddlewareFactory
from aclbus.permissions import Permissions
from aclbus.plugin import hookimpl
from aclbus.settings import Settings
from aclbus_auth.policy.command import policy as policy_command
from aclbus_auth.policy.grants import permissions_for
from aclbus_auth.policy.loading import PolicyError, load_policy
from aclbus_auth.policy.model import Policy
from aclbus_auth.policy.sender import SenderCheck
from aclbus_auth.settings import AuthSettings

__all__ = ["PolicyPlugin"]


def _sender_check(user: str, agents: frozenset[str], bus: Any) -> SenderCheck:
    return SenderCheck(user, agents)


class PolicyPlugin:
    """The policy's hooks, for the auth settings given (or read from the environment).

    Pass one to ``Bus(plugins=[PolicyPlugin(AuthSettings(user=..., policy_file=...))])``
    with ``entry_points=False`` (or ``ACLBUS_DISABLE_PLUGINS=auth``) to run several buses,
    each its own user, in one process.

    Args:
        settings: The auth settings; None reads ``ACLBUS_AUTH__*`` and ``[auth]`` each time
            a bus asks.
    """

    def __init__(self, settings: AuthSettings | None = None) -> None:
        self._settings = settings

    def auth_settings(self) -> AuthSettings:
        """The settings given, else ``ACLBUS_AUTH__*`` and ``[auth]`` as they are now."""
        return self._settings if self._settings is not None else AuthSettings()

    def _principal(self) -> tuple[Policy, str] | None:
        """The policy and the user, or None without a policy file.

        Raises:
            ConfigurationError: A policy file without a user.
            PolicyError: The policy cannot be used, or does not have the user.
        """
        auth = self.auth_settings()
        if auth.policy_file is None:
            return None
        if auth.user is None:
            raise ConfigurationError(
                f"ACLBUS_AUTH__POLICY_FILE is {str(auth.policy_file)!r} but ACLBUS_AUTH__USER "
                "is not set: name the policy's user this bus connects as"
            )
        policy = load_policy(auth.policy_file)
        if auth.user not in policy.users:
            raise PolicyError(
                str(auth.policy_file),
                "users",
                f"no user {auth.user!r} (ACLBUS_AUTH__USER); users: {', '.join(policy.users)}",
            )
        return policy, auth.user

    @hookimpl
    def aclbus_connection_permissions(self, settings: Settings) -> Permissions | None:
        """The user's permissions, rendered from the policy (None without a policy)."""
        found = self._principal()
        return None if found is None else permissions_for(*found)

    @hookimpl
    def aclbus_middlewares(self, settings: Settings) -> Sequence[MiddlewareFactory]:
        """`SenderCheck` for the user's agents (none without a policy, or for an admin)."""
        found = self._principal()
        if found is None:
            return []
        policy, user = found
        if policy.users[user].admin:
            return []  # an admin's bus provisions and inspects: it may send as anyone
        return [partial(_sender_check, user, frozenset(policy.users[user].agents))]

    @hookimpl
    def aclbus_register_commands(self, register: Callable[[Any], None]) -> None:
        """``aclbus policy``: render, check, claims."""
        register(policy_command)
