"""NKeys: the Ed25519 keys of NATS operators, accounts and users, and their text encoding.

A public key is base32 of a prefix byte (its role: ``O``, ``A``, ``U``), the 32-byte Ed25519
public key and a CRC16; a seed is base32 of two prefix bytes (``S`` and the role), the 32-byte
Ed25519 seed and a CRC16. `NKey` reads and writes both, as the ``nkeys`` package does, and
signs with ``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aclbus.errors import ACLBusError

__all__ = ["JWTError", "KeyKind", "NKey", "decode_public_key"]

KeyKind = Literal["operator", "account", "user"]
"""The roles of a key in operator mode: its public key starts with ``O``, ``A`` or ``U``."""

# The NKeys prefix bytes: base32 turns each into the first letter of the key.
_PREFIX: dict[KeyKind, int] = {"operator": 14 << 3, "account": 0, "user": 20 << 3}
_KIND = {byte: kind for kind, byte in _PREFIX.items()}
_SEED_PREFIX = 18 << 3  # "S": the seed's first letter; its second is the role's


class JWTError(ACLBusError, ValueError):
    """A key, a seed or a JWT that is malformed, of the wrong role, or wrongly signed.

    The message names what is wrong and never holds a seed.
    """

    def __init__(self, what: str, problem: str) -> None:
        self.what = what
        self.problem = problem
        super().__init__(f"{what}: {problem}")


def _crc16(data: bytes) -> bytes:
    # CRC-16/XMODEM (polynomial 0x1021, initial 0), little-endian, as the NKeys spec says.
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc.to_bytes(2, "little")


def _b32encode(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=")


def _b32decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        raise JWTError(what, "not base32") from None
    if len(raw) < 4 or _crc16(raw[:-2]) != raw[-2:]:
        raise JWTError(what, "bad checksum")
    return raw[:-2]


def decode_public_key(public_key: str) -> tuple[KeyKind, bytes]:
    """The role and the raw Ed25519 public key of a public NKey (``O…``, ``A…`` or ``U…``).

    Raises:
        JWTError: Not a public NKey of an operator, account or user.
    """
    raw = _b32decode(public_key, f"public key {public_key[:12]!r}")
    kind = _KIND.get(raw[0])
    if kind is None or len(raw) != 33:
        raise JWTError(
            f"public key {public_key[:12]!r}", "not an operator, account or user public NKey"
        )
    return kind, raw[1:]


class NKey:
    """An Ed25519 key pair of an operator, account or user, in the NKeys encoding.

    Its repr shows the public key only; the seed is read through `seed` on purpose.

    Args:
        kind: The key's role.
        private: Its Ed25519 private key.
    """

    def __init__(self, kind: KeyKind, private: Ed25519PrivateKey) -> None:
        self.kind: KeyKind = kind
        self._private = private
        raw_public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        prefixed = bytes([_PREFIX[kind]]) + raw_public
        self.public_key: str = _b32encode(prefixed + _crc16(prefixed))
        """The public NKey: ``O…``, ``A…`` or ``U…``."""

    @classmethod
    def create(cls, kind: KeyKind) -> NKey:
        """A new random key of ``kind``."""
        return cls(kind, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: str | bytes) -> NKey:
        """The key of an encoded seed (``SO…``, ``SA…`` or ``SU…``).

        Raises:
            JWTError: Not the seed of an operator, account or user.
        """
        text = (seed.decode() if isinstance(seed, bytes) else seed).strip()
        raw = _b32decode(text, "seed")
        if len(raw) != 34 or raw[0] & 0xF8 != _SEED_PREFIX:
            raise JWTError("seed", "not an NKey seed")
        role = ((raw[0] & 0x07) << 5) | ((raw[1] & 0xF8) >> 3)
        kind = _KIND.get(role)
        if kind is None:
            raise JWTError("seed", "not the seed of an operator, account or user")
        return cls(kind, Ed25519PrivateKey.from_private_bytes(raw[2:]))

    @property
    def seed(self) -> str:
        """The encoded seed (``SO…``, ``SA…``, ``SU…``): the secret that signs."""
        role = _PREFIX[self.kind]
        raw = self._private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        prefixed = bytes([_SEED_PREFIX | role >> 5, (role & 31) << 3]) + raw
        return _b32encode(prefixed + _crc16(prefixed))

    def sign(self, data: bytes) -> bytes:
        """The Ed25519 signature of ``data`` (64 bytes)."""
        return self._private.sign(data)

    def __repr__(self) -> str:
        return f"NKey({self.kind}, {self.public_key})"
