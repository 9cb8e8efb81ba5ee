"""A policy as nats-server configuration: the ``authorization {}`` block, JSON, JWT claims.

``aclbus policy render POLICY`` prints `render_nats_conf` (or `render_json`); include it in
the server's configuration and reload the server (docs/security.md, "Deploying a policy").
For operator mode, `jwt_permissions` gives each user's permission claims, to be signed into
its user JWT.
"""

from __future__ import annotations

import json
from typing import Any

from aclbus.permissions import Permissions, SubjectRules
from aclbus_auth.policy.grants import permissions_for
from aclbus_auth.policy.model import Policy, User

__all__ = ["authorization", "jwt_permissions", "render_json", "render_nats_conf"]

_NANOSECONDS = 1_000_000_000


def _rules(rules: SubjectRules) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if rules.allow:
        out["allow"] = list(rules.allow)
    if rules.deny:
        out["deny"] = list(rules.deny)
    return out


def _permissions(policy: Policy, permissions: Permissions) -> dict[str, Any]:
    out: dict[str, Any] = {
        "publish": _rules(permissions.publish),
        "subscribe": _rules(permissions.subscribe),
    }
    if permissions.responses is not None:
        out["allow_responses"] = {
            "max": permissions.responses.max,
            "expires": policy.responses.expires,
        }
    return out


def _identity(name: str, user: User) -> dict[str, Any]:
    if user.method == "password":
        return {"user": name, "password": user.password}
    if user.method == "nkey":
        return {"nkey": user.nkey}
    return {"user": user.certificate}  # the identity verify_and_map takes from the certificate


def authorization(policy: Policy) -> dict[str, Any]:
    """The ``authorization`` section as data: ``{"users": [...]}``, one entry per user."""
    users = []
    for name, user in policy.users.items():
        entry = _identity(name, user)
        entry["permissions"] = _permissions(policy, permissions_for(policy, name))
        users.append(entry)
    return {"users": users}


def render_json(policy: Policy) -> str:
    """The ``authorization`` section as JSON (passwords stay ``$VARIABLE`` references)."""
    return json.dumps({"authorization": authorization(policy)}, indent=2)


def _value(value: Any, indent: str) -> str:
    if isinstance(value, dict):
        inner = indent + "  "
        lines = [f"{inner}{key}: {_value(item, inner)}" for key, item in value.items()]
        return "{\n" + "\n".join(lines) + f"\n{indent}}}"
    if isinstance(value, list):
        inner = indent + "  "
        lines = [f"{inner}{_value(item, inner)}" for item in value]
        return "[\n" + "\n".join(lines) + f"\n{indent}]"
    if isinstance(value, bool | int):
        return json.dumps(value)
    return json.dumps(str(value))  # quoted: '$', '>' and '*' are literal in a quoted string


def render_nats_conf(policy: Policy) -> str:
    """The ``authorization {}`` block of nats-server's configuration.

    Passwords are written unquoted as the policy's ``$VARIABLE`` references, which the server
    resolves from its environment when it reads the file: no secret is in the output.
    """
    users = []
    for entry in authorization(policy)["users"]:
        fields = []
        for key, item in entry.items():
            if key == "password":
                fields.append(f"      password: {item}")  # unquoted: a variable reference
            else:
                fields.append(f"      {key}: {_value(item, '      ')}")
        users.append("    {\n" + "\n".join(fields) + "\n    }")
    header = (
        "# Rendered by `aclbus policy render` from an aclbus policy: edit the policy, not this.\n"
    )
    return header + "authorization {\n  users = [\n" + "\n".join(users) + "\n  ]\n}\n"


def jwt_permissions(policy: Policy, user: str) -> dict[str, Any]:
    """``user``'s permissions as the ``nats`` claims of a user JWT (operator mode).

    ``{"pub": {"allow": [...], "deny": [...]}, "sub": {...}, "resp": {"max": 1, "ttl": ns}}``:
    the shape nats-server reads from a user JWT, the response window in nanoseconds. The
    user JWT is signed with these claims by the account's key (`aclbus_auth.jwt`).

    Raises:
        KeyError: No such user.
    """
    permissions = permissions_for(policy, user)
    claims: dict[str, Any] = {
        "pub": _rules(permissions.publish),
        "sub": _rules(permissions.subscribe),
    }
    if permissions.responses is not None:
        claims["resp"] = {
            "max": permissions.responses.max,
            "ttl": int(permissions.responses.expires * _NANOSECONDS),
        }
    return claims
