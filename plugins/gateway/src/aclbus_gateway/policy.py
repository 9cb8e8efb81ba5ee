"""Which agents the gateway may act for, under the auth plugin's policy (docs/security.md).

A gateway connects as one policy user (``ACLBUS_AUTH__USER`` with
``ACLBUS_AUTH__POLICY_FILE``); its callers act as their own agents, and only as agents that
user may act as. A caller whose agent is outside the user's is refused with 403 before
anything is sent, rather than by the bus' sender check after the body was read.
"""

from __future__ import annotations

from aclbus.errors import ConfigurationError
from aclbus_auth import AuthSettings
from aclbus_auth.policy import load_policy

__all__ = ["allowed_agents"]


def allowed_agents(auth: AuthSettings | None = None) -> frozenset[str] | None:
    """The agents the gateway's policy user may act as; None: any (no policy, or an admin).

    Args:
        auth: The auth settings (default: ``ACLBUS_AUTH__*`` and ``[auth]``).

    Raises:
        ConfigurationError: A policy without a user, or a user the policy does not have.
        PolicyError: The policy file cannot be used.
    """
    auth = auth if auth is not None else AuthSettings()
    if auth.policy_file is None:
        return None
    if auth.user is None:
        raise ConfigurationError(
            f"ACLBUS_AUTH__POLICY_FILE is {str(auth.policy_file)!r} but ACLBUS_AUTH__USER is "
            "not set: name the policy's user the gateway connects as"
        )
    policy = load_policy(auth.policy_file)
    user = policy.users.get(auth.user)
    if user is None:
        raise ConfigurationError(
            f"the policy {str(auth.policy_file)!r} has no user {auth.user!r} (ACLBUS_AUTH__USER)"
        )
    if user.admin:
        return None
    return frozenset(user.agents)
