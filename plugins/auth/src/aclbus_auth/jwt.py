"""NATS decentralized auth (operator mode): NKeys, signed operator/account/user JWTs, .creds files.

Everything nats-server needs for ``operator`` mode, made in Python with ``cryptography`` alone
(no ``nsc``): an operator signs accounts, an account signs its users, a user connects with a
``.creds`` file (its JWT and its seed)::

    from aclbus_auth.jwt import (
        NKey, account_jwt, operator_jwt, resolver_config, user_jwt, write_creds,
    )

    operator, system, app = NKey.create("operator"), NKey.create("account"), NKey.create("account")
    user = NKey.create("user")
    config = resolver_config(
        operator_jwt(operator, system_account=system.public_key),
        system_account=system.public_key,
        accounts={
            system.public_key: account_jwt(
                system.public_key, operator, name="SYS", jetstream=False
            ),
            app.public_key: account_jwt(app.public_key, operator, name="APP"),
        },
    )
    token = user_jwt(user.public_key, app, name="alice", permissions={"pub": {"allow": ["a.>"]}})
    write_creds("alice.creds", token, user)

The formats follow nats-io/jwt v2 (header ``{"typ":"JWT","alg":"ed25519-nkey"}``, claims with
``jti``, ``iat``, ``iss``, ``sub``, ``name`` and a ``nats`` object with ``type`` and
``version: 2``) and the NKeys encoding (base32 of a prefix byte, the key and a CRC16).
Signatures are checked with ``cryptography``'s Ed25519: `verify_jwt` never trusts a token
whose signature it did not check.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from aclbus_auth.keys import JWTError, KeyKind, NKey, decode_public_key

__all__ = [
    "JWTError",
    "KeyKind",
    "NKey",
    "Permission",
    "ResponsePermission",
    "UserPermissions",
    "account_jwt",
    "creds_text",
    "decode_public_key",
    "encode_jwt",
    "operator_jwt",
    "resolver_config",
    "user_jwt",
    "verify_jwt",
    "write_creds",
]

_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_VERSION = 2  # nats-io/jwt v2 claims
_NO_LIMIT = -1
# What a claim of each type may be signed by (nats-io/jwt ExpectedPrefixes).
_SIGNERS: dict[str, tuple[KeyKind, ...]] = {
    "operator": ("operator",),
    "account": ("operator", "account"),
    "user": ("account",),
}


class Permission(TypedDict, total=False):
    """Subjects allowed and denied (to publish, or to subscribe), as nats-server matches them."""

    allow: list[str]
    deny: list[str]


class ResponsePermission(TypedDict):
    """Replies to requests this user received (``allow_responses``).

    Attributes:
        max: How many replies per request (``1`` for a plain reply).
        ttl: For how long after the request, in nanoseconds (``0``: no limit).
    """

    max: int
    ttl: int


class UserPermissions(TypedDict, total=False):
    """A user JWT's permissions: ``pub``, ``sub`` and ``resp`` (none set: allowed everything)."""

    pub: Permission
    sub: Permission
    resp: ResponsePermission


# -- JWTs --------------------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise JWTError(what, "not base64url") from None


def _compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _seconds(at: dt.datetime | None) -> int | None:
    return None if at is None else int(at.timestamp())


def encode_jwt(
    claims: Mapping[str, Any],
    issuer: NKey,
    *,
    issued_at: dt.datetime | None = None,
    expires: dt.datetime | None = None,
) -> str:
    """Sign ``claims`` with ``issuer``: a NATS JWT (``header.claims.signature``).

    ``iss``, ``iat``, ``exp`` and ``jti`` are set here; ``jti`` is the base32 SHA-512/256 of
    the standard claims without it, as nats-io/jwt makes it.

    Args:
        claims: At least ``sub`` and ``nats`` (with its ``type``).
        issuer: The key that signs: an operator for operator and account claims, an account
            for user claims.
        issued_at: ``iat`` (default: now).
        expires: ``exp``; None for a JWT that does not expire.

    Raises:
        JWTError: The claims have no subject or type, or ``issuer`` may not sign them.
    """
    kind = str(claims.get("nats", {}).get("type", ""))
    if not claims.get("sub") or kind not in _SIGNERS:
        raise JWTError("claims", "need a 'sub' and a nats.type of operator, account or user")
    if issuer.kind not in _SIGNERS[kind]:
        raise JWTError("issuer", f"an {issuer.kind} key may not sign {kind} claims")
    body: dict[str, Any] = dict(claims)
    body["iss"] = issuer.public_key
    body["iat"] = _seconds(issued_at) or int(time.time())
    if expires is not None:
        body["exp"] = _seconds(expires)
    body.pop("jti", None)
    standard = {k: body[k] for k in ("aud", "exp", "iat", "iss", "name", "nbf", "sub") if k in body}
    digest = hashlib.new("sha512_256", _compact(standard)).digest()
    body = {"jti": base64.b32encode(digest).decode().rstrip("="), **body}
    signed = f"{_b64(_compact(_HEADER))}.{_b64(_compact(body))}"
    return f"{signed}.{_b64(issuer.sign(signed.encode()))}"


def verify_jwt(
    token: str, *, issuer: str | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    """The claims of ``token`` once its signature, signer and validity are checked.

    The signature is verified with the Ed25519 public key decoded from the ``iss`` NKey; the
    issuer must be of a role that may sign the claim's type.

    Args:
        token: A NATS JWT.
        issuer: The public key that must have signed it (None: whoever ``iss`` names).
        now: The time to check ``exp`` and ``nbf`` against (default: now).

    Raises:
        JWTError: Malformed, a header other than ed25519-nkey, a bad signature, another
            issuer, expired, or not valid yet.
    """
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise JWTError("JWT", "not three dot-separated parts")
    try:
        header = json.loads(_unb64(parts[0], "JWT header"))
        claims = json.loads(_unb64(parts[1], "JWT claims"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise JWTError("JWT", "header or claims are not JSON") from None
    if not isinstance(header, dict) or header.get("alg") != _HEADER["alg"]:
        raise JWTError("JWT header", f"alg is not {_HEADER['alg']}")
    if not isinstance(claims, dict) or not isinstance(claims.get("iss"), str):
        raise JWTError("JWT claims", "no issuer")
    signer, raw = decode_public_key(claims["iss"])
    kind = str((claims.get("nats") or {}).get("type", ""))
    if signer not in _SIGNERS.get(kind, ()):
        raise JWTError("JWT", f"{kind or 'untyped'} claims may not be signed by an {signer}")
    if issuer is not None and claims["iss"] != issuer:
        raise JWTError("JWT", f"signed by {claims['iss']}, not by {issuer}")
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(
            _unb64(parts[2], "JWT signature"), f"{parts[0]}.{parts[1]}".encode()
        )
    except InvalidSignature:
        raise JWTError("JWT", f"the signature is not {claims['iss']}'s") from None
    moment = (now or dt.datetime.now(dt.UTC)).timestamp()
    if isinstance(claims.get("exp"), int) and claims["exp"] and moment > claims["exp"]:
        raise JWTError("JWT", "expired")
    if isinstance(claims.get("nbf"), int) and claims["nbf"] and moment < claims["nbf"]:
        raise JWTError("JWT", "not valid yet")
    return claims


def operator_jwt(
    operator: NKey,
    *,
    name: str = "aclbus",
    system_account: str | None = None,
    expires: dt.datetime | None = None,
) -> str:
    """The operator's self-signed JWT (the server's ``operator``).

    Args:
        operator: The operator key.
        name: The operator's name.
        system_account: The public key of the system account, if any.
        expires: When it expires (None: never).

    Raises:
        JWTError: ``operator`` is not an operator key.
    """
    if operator.kind != "operator":
        raise JWTError("operator", f"an {operator.kind} key is not an operator key")
    nats: dict[str, Any] = {"type": "operator", "version": _VERSION}
    if system_account is not None:
        if decode_public_key(system_account)[0] != "account":
            raise JWTError("system_account", "not an account public key")
        nats["system_account"] = system_account
    return encode_jwt(
        {"sub": operator.public_key, "name": name, "nats": nats}, operator, expires=expires
    )


def account_jwt(
    account: str,
    operator: NKey,
    *,
    name: str,
    jetstream: bool = True,
    expires: dt.datetime | None = None,
) -> str:
    """An account's JWT, signed by the operator; unlimited, with JetStream when asked.

    JetStream works in an account only when its limits give it storage: ``jetstream=True``
    sets memory, disk, streams and consumers to unlimited (``-1``). The system account is
    made with ``jetstream=False``.

    Args:
        account: The account's public key (``A…``).
        operator: The operator key that signs it.
        name: The account's name.
        jetstream: Whether the account may use JetStream.
        expires: When it expires (None: never).

    Raises:
        JWTError: ``account`` is not an account public key, or ``operator`` not an operator.
    """
    if decode_public_key(account)[0] != "account":
        raise JWTError(f"account {account[:12]!r}", "not an account public key")
    limits: dict[str, Any] = {
        "subs": _NO_LIMIT,
        "data": _NO_LIMIT,
        "payload": _NO_LIMIT,
        "imports": _NO_LIMIT,
        "exports": _NO_LIMIT,
        "wildcards": True,
        "conn": _NO_LIMIT,
        "leaf": _NO_LIMIT,
    }
    if jetstream:
        limits |= {
            "mem_storage": _NO_LIMIT,
            "disk_storage": _NO_LIMIT,
            "streams": _NO_LIMIT,
            "consumer": _NO_LIMIT,
        }
    nats = {"type": "account", "version": _VERSION, "limits": limits}
    return encode_jwt({"sub": account, "name": name, "nats": nats}, operator, expires=expires)


def _checked_permissions(permissions: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(permissions) - {"pub", "sub", "resp"})
    if unknown:
        raise JWTError("permissions", f"unknown keys {unknown} (pub, sub, resp)")
    out: dict[str, Any] = {}
    for direction in ("pub", "sub"):
        rule = permissions.get(direction) or {}
        if set(rule) - {"allow", "deny"}:
            raise JWTError(f"permissions.{direction}", "takes only 'allow' and 'deny'")
        lists = {k: list(rule[k]) for k in ("allow", "deny") if rule.get(k)}
        for key, subjects in lists.items():
            if not all(isinstance(s, str) and s and " " not in s.strip() for s in subjects):
                raise JWTError(f"permissions.{direction}.{key}", "subjects are non-empty words")
        out[direction] = lists
    resp = permissions.get("resp")
    if resp is not None:
        if not isinstance(resp.get("max"), int) or not isinstance(resp.get("ttl", 0), int):
            raise JWTError("permissions.resp", "needs an integer 'max' and 'ttl' (nanoseconds)")
        out["resp"] = {"max": resp["max"], "ttl": resp.get("ttl", 0)}
    return out


def user_jwt(
    user: str,
    account: NKey,
    *,
    name: str,
    permissions: UserPermissions | Mapping[str, Any] | None = None,
    issued_at: dt.datetime | None = None,
    expires: dt.datetime | None = None,
) -> str:
    """A user's JWT, signed by its account, holding what the user may publish and subscribe.

    Args:
        user: The user's public key (``U…``).
        account: The account key that signs it (its users connect into this account).
        name: The user's name (what the server reports as its name).
        permissions: ``pub``/``sub`` allow and deny lists and ``resp``, as `UserPermissions`;
            None: allowed everything.
        issued_at: ``iat`` (default: now).
        expires: When the server stops accepting it (None: never).

    Raises:
        JWTError: ``user`` is not a user public key, ``account`` not an account key, or the
            permissions are malformed.
    """
    if decode_public_key(user)[0] != "user":
        raise JWTError(f"user {user[:12]!r}", "not a user public key")
    nats: dict[str, Any] = {
        "type": "user",
        "version": _VERSION,
        "subs": _NO_LIMIT,
        "data": _NO_LIMIT,
        "payload": _NO_LIMIT,
        **_checked_permissions(permissions or {}),
    }
    return encode_jwt(
        {"sub": user, "name": name, "nats": nats},
        account,
        issued_at=issued_at,
        expires=expires,
    )


def creds_text(token: str, user: NKey) -> str:
    """The text of a ``.creds`` file: the user's JWT and seed, framed as nats-py reads them.

    Raises:
        JWTError: ``user`` is not a user key, or the JWT is not for it.
    """
    if user.kind != "user":
        raise JWTError("creds", f"an {user.kind} key is not a user key")
    parts = token.split(".")
    claims = json.loads(_unb64(parts[1], "JWT claims")) if len(parts) == 3 else {}
    if claims.get("sub") != user.public_key:
        raise JWTError("creds", f"the JWT is not for user {user.public_key}")
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{token}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user.seed}\n"
        "------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )


def write_creds(path: str | os.PathLike[str], token: str, user: NKey) -> Path:
    """Write a ``.creds`` file readable by its owner only (mode 0600); returns its path.

    Raises:
        JWTError: As `creds_text`.
    """
    text = creds_text(token, user)
    target = Path(path)
    # Created 0600 before anything is written, so the seed is never readable by others.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    target.chmod(0o600)  # an existing file keeps its mode through O_TRUNC
    return target


def resolver_config(operator: str, *, system_account: str, accounts: Mapping[str, str]) -> str:
    """The nats-server configuration of operator mode with a memory resolver.

    Args:
        operator: The operator's JWT.
        system_account: The system account's public key (it must be in ``accounts``).
        accounts: Every account's JWT by its public key, preloaded into the resolver.

    Raises:
        JWTError: The system account has no JWT in ``accounts``.
    """
    if system_account not in accounts:
        raise JWTError("resolver", "the system account needs its JWT in accounts")
    preload = "\n".join(f"  {key}: {jwt_}" for key, jwt_ in accounts.items())
    return (
        f"operator: {operator}\n"
        f"system_account: {system_account}\n"
        "resolver: MEMORY\n"
        f"resolver_preload: {{\n{preload}\n}}\n"
    )
