"""aclbus-auth.

Who a bus connects as, and what each agent may do: credentials, the policy, its rendering into
server permissions (SPEC R9, R11).
"""

from __future__ import annotations

from aclbus_auth.policy import PolicyPlugin

__all__: list[str] = [
    "PolicyPlugin",
    "aclbus_connection_permissions",
    "aclbus_middlewares",
    "aclbus_register_commands",
]

# The policy's hooks, read from ACLBUS_AUTH__* each time a bus asks (docs/security.md).
_policy = PolicyPlugin()
aclbus_connection_permissions = _policy.aclbus_connection_permissions
aclbus_middlewares = _policy.aclbus_middlewares
aclbus_register_commands = _policy.aclbus_register_commands
