"""aclbus-auth.

Who a bus connects as, and what each agent may do: credentials, the policy, its rendering into
server permissions (SPEC R9, R11).
"""

from __future__ import annotations

from aclbus_auth.jwt import (
    JWTError,
    KeyKind,
    NKey,
    Permission,
    ResponsePermission,
    UserPermissions,
    account_jwt,
    creds_text,
    operator_jwt,
    resolver_config,
    user_jwt,
    verify_jwt,
    write_creds,
)

__all__: list[str] = [
    "JWTError",
    "KeyKind",
    "NKey",
    "Permission",
    "ResponsePermission",
    "UserPermissions",
    "account_jwt",
    "creds_text",
    "operator_jwt",
    "resolver_config",
    "user_jwt",
    "verify_jwt",
    "write_creds",
]
