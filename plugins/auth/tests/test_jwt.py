"""`aclbus_auth.jwt`: NKeys as the nkeys package reads them, JWTs only its signer's key verifies.

nats-server itself accepting these JWTs and creds files is tested in
adapters/nats/tests/test_operator_mode.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from pathlib import Path

import nkeys
import pytest

from aclbus_auth.jwt import (
    JWTError,
    KeyKind,
    NKey,
    account_jwt,
    decode_public_key,
    operator_jwt,
    user_jwt,
    verify_jwt,
    write_creds,
)

KINDS: list[KeyKind] = ["operator", "account", "user"]


def _claims(token: str) -> dict[str, object]:
    body = token.split(".")[1]
    claims: dict[str, object] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return claims


@pytest.mark.parametrize("kind", KINDS)
def test_seeds_and_public_keys_are_those_of_the_nkeys_package(kind: KeyKind) -> None:
    key = NKey.create(kind)
    theirs = nkeys.from_seed(key.seed.encode())
    assert theirs.public_key.decode() == key.public_key
    assert key.public_key[0] == kind[0].upper()
    assert key.seed[:2] == "S" + kind[0].upper()
    assert theirs.sign(b"data") == key.sign(b"data")  # Ed25519 is deterministic
    assert NKey.from_seed(key.seed).public_key == key.public_key
    assert decode_public_key(key.public_key)[0] == kind
    # A seed the nkeys package made is read back too.
    raw = os.urandom(32)
    seed = nkeys.encode_seed(raw, nkeys.PREFIX_BYTE_USER).decode()
    assert NKey.from_seed(seed).public_key == nkeys.from_seed(seed.encode()).public_key.decode()


def test_the_repr_shows_the_public_key_and_never_the_seed() -> None:
    key = NKey.create("user")
    assert key.public_key in repr(key)
    assert key.seed not in f"{key!r} {key}"
    assert key.seed[2:20] not in f"{key!r} {key}"


@pytest.mark.parametrize("broken", ["", "SUXYZ", "not base32!", "U" + "A" * 55])
def test_a_malformed_seed_or_key_is_a_typed_error(broken: str) -> None:
    with pytest.raises(JWTError):
        NKey.from_seed(broken)
    with pytest.raises(JWTError):
        decode_public_key(broken)


def test_a_seed_with_a_bad_checksum_is_refused() -> None:
    seed = NKey.create("user").seed
    flipped = seed[:20] + ("A" if seed[20] != "A" else "B") + seed[21:]  # a key bit, not padding
    with pytest.raises(JWTError, match="checksum") as caught:
        NKey.from_seed(flipped)
    assert flipped[2:] not in f"{caught.value!s} {caught.value!r}"  # the error holds no seed


def test_a_user_jwt_holds_its_claims_and_verifies_with_its_account_key() -> None:
    account, user = NKey.create("account"), NKey.create("user")
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    token = user_jwt(
        user.public_key,
        account,
        name="alice",
        permissions={"pub": {"allow": ["a.>"], "deny": ["a.b"]}, "resp": {"max": 1, "ttl": 0}},
        expires=expires,
    )
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"typ": "JWT", "alg": "ed25519-nkey"}
    claims = verify_jwt(token, issuer=account.public_key)
    assert (claims["sub"], claims["iss"], claims["name"]) == (
        user.public_key,
        account.public_key,
        "alice",
    )
    assert claims["exp"] == int(expires.timestamp())
    assert claims["nats"]["type"] == "user"
    assert claims["nats"]["version"] == 2
    assert claims["nats"]["pub"] == {"allow": ["a.>"], "deny": ["a.b"]}
    assert claims["nats"]["resp"] == {"max": 1, "ttl": 0}
    assert len(claims["jti"]) == 52  # base32 of 32 bytes, unpadded


def test_account_claims_give_jetstream_unlimited_storage_unless_told_not_to() -> None:
    operator, account = NKey.create("operator"), NKey.create("account")
    limits = _claims(account_jwt(account.public_key, operator, name="APP"))["nats"]
    assert isinstance(limits, dict)
    assert {k: limits["limits"][k] for k in ("mem_storage", "disk_storage", "streams")} == {
        "mem_storage": -1,
        "disk_storage": -1,
        "streams": -1,
    }
    system = _claims(account_jwt(account.public_key, operator, name="SYS", jetstream=False))
    assert isinstance(system["nats"], dict)
    assert "mem_storage" not in system["nats"]["limits"]
    op = verify_jwt(operator_jwt(operator, system_account=account.public_key))
    assert op["nats"]["system_account"] == account.public_key
    assert op["iss"] == op["sub"] == operator.public_key


def _with_signature(token: str, signature: bytes) -> str:
    head, body, _ = token.split(".")
    return f"{head}.{body}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"


def test_a_zero_forged_or_foreign_signature_is_refused() -> None:
    account, user = NKey.create("account"), NKey.create("user")
    token = user_jwt(user.public_key, account, name="alice")
    with pytest.raises(JWTError, match="signature"):
        verify_jwt(_with_signature(token, bytes(64)))
    other = NKey.create("account")
    head, body, _ = token.split(".")
    with pytest.raises(JWTError, match="signature"):  # right issuer named, another key signed
        verify_jwt(_with_signature(token, other.sign(f"{head}.{body}".encode())))
    claims = _claims(token)
    claims["nats"] = {"type": "user", "version": 2}  # permissions dropped by a forger
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(JWTError, match="signature"):
        verify_jwt(f"{head}.{forged}.{token.split('.')[2]}")
    with pytest.raises(JWTError, match="not by"):
        verify_jwt(token, issuer=other.public_key)


def test_an_expired_jwt_is_refused_by_verify() -> None:
    account, user = NKey.create("account"), NKey.create("user")
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    token = user_jwt(user.public_key, account, name="late", expires=past)
    with pytest.raises(JWTError, match="expired"):
        verify_jwt(token)
    assert verify_jwt(token, now=past - dt.timedelta(minutes=1))["name"] == "late"


def test_only_the_right_roles_sign() -> None:
    operator, account, user = NKey.create("operator"), NKey.create("account"), NKey.create("user")
    with pytest.raises(JWTError, match="may not sign"):
        user_jwt(user.public_key, operator, name="x")  # users are signed by their account
    with pytest.raises(JWTError, match="not a user public key"):
        user_jwt(account.public_key, account, name="x")
    with pytest.raises(JWTError, match="not an operator key"):
        operator_jwt(account)
    with pytest.raises(JWTError, match="unknown keys"):
        user_jwt(user.public_key, account, name="x", permissions={"publish": {}})


def test_a_creds_file_is_owner_only_and_read_back_by_nats_py(tmp_path: Path) -> None:
    from nats.aio.client import Client

    account, user = NKey.create("account"), NKey.create("user")
    token = user_jwt(user.public_key, account, name="alice")
    path = tmp_path / "alice.creds"
    path.write_text("old")
    path.chmod(0o644)
    assert write_creds(path, token, user) == path
    assert path.stat().st_mode & 0o777 == 0o600
    client = Client()
    assert bytes(client._read_creds_user_jwt(path)).decode() == token
    assert bytes(client._read_creds_user_nkey(path)).decode() == user.seed
    with pytest.raises(JWTError, match="not for user"):
        write_creds(path, token, NKey.create("user"))
