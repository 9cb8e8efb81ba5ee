"""The policy: who may do what, in aclbus' terms, rendered into server permissions.

`load_policy` reads a policy file (`Policy`); `permissions_for` gives a user's subject
permissions, which `render_nats_conf` and `render_json` write as nats-server's
``authorization {}`` block and `jwt_permissions` as a user JWT's claims. The same permissions
hold a memory backend (`PolicyPlugin`), and `SenderCheck` keeps a bus to its user's agents.
docs/security.md ("The policy") is the reference.
"""

from __future__ import annotations

from aclbus_auth.policy.grants import permissions_for
from aclbus_auth.policy.loading import PolicyError, load_policy, parse_policy
from aclbus_auth.policy.model import AgentGrants, DlqAccess, Policy, Responses, User
from aclbus_auth.policy.plugin import PolicyPlugin
from aclbus_auth.policy.rendering import (
    authorization,
    jwt_permissions,
    render_json,
    render_nats_conf,
)
from aclbus_auth.policy.sender import SenderCheck

__all__ = [
    "AgentGrants",
    "DlqAccess",
    "Policy",
    "PolicyError",
    "PolicyPlugin",
    "Responses",
    "SenderCheck",
    "User",
    "authorization",
    "jwt_permissions",
    "load_policy",
    "parse_policy",
    "permissions_for",
    "render_json",
    "render_nats_conf",
]
