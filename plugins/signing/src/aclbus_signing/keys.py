"""Ed25519 keys: reading an agent's private key, naming public keys by their key id.

A **key id** is the public key itself, 32 bytes, written in base64url without padding (43
characters, RFC 4648 section 5): it names the key and is all a verifier needs, so a key id
never has to be looked up to be checked. NATS' own text form of a user's public key (an
NKey, ``U…``, base32 with a checksum) is accepted wherever a key id is read, and turned into
one.

A private key file holds one of (surrounding whitespace is ignored):

- an NKey user seed, ``SU…`` (what ``nk -gen user`` and ``nsc`` write), so the key an agent
  connects to NATS with can also sign its messages;
- a PEM ``PRIVATE KEY`` block (PKCS #8) of an Ed25519 key, as ``openssl genpkey -algorithm
  ed25519`` writes it;
- the 32-byte seed in base64url or base64 (43 or 44 characters).

The seed never appears in an error, a log line or a repr: errors name the file and what is
wrong with it.

Signing and verifying use libsodium (PyNaCl), about twice as fast as OpenSSL's Ed25519 here;
``cryptography`` reads PEM files. (The ``nkeys`` package is not used: its verify needs the
seed.)
"""

from __future__ import annotations

import base64
import binascii
import logging
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from aclbus.errors import ConfigurationError

__all__ = [
    "InvalidKey",
    "PrivateKey",
    "b64url",
    "decode_key_id",
    "key_id",
    "public_key",
    "read_private_key",
    "verify",
]

log = logging.getLogger("aclbus.signing")

_NKEY_SEED = 18 << 3  # NKey version byte of a seed: base32-encodes to 'S'
_NKEY_USER = 20 << 3  # of a user's public key: 'U'


class InvalidKey(ConfigurationError):
    """A key or key id that cannot be read; says which and why, never the key's secret part."""


def b64url(data: bytes) -> str:
    """``data`` in base64url without padding (RFC 4648 section 5)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes | None:
    """base64url or base64, padded or not; None when it is neither."""
    t = text.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(t + "=" * (-len(t) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _crc16(data: bytes) -> int:
    """CRC-16/XMODEM, the checksum at the end of an NKey."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _nkey_raw(text: str) -> bytes | None:
    """The bytes of an NKey (version byte(s) and key, checksum checked), or None."""
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        return None
    if len(raw) < 4 or _crc16(raw[:-2]) != int.from_bytes(raw[-2:], "little"):
        return None
    return raw[:-2]


def key_id(key: VerifyKey) -> str:
    """The key id of ``key``: its 32 bytes in base64url, no padding."""
    return b64url(bytes(key))


def decode_key_id(text: str, *, where: str = "key id") -> str:
    """Check a key id (or a ``U…`` NKey public key) and return it as a key id.

    Args:
        text: A key id, or a NATS user public key (``U…``).
        where: What it is, for the error (``"keys.toml: alice"``).

    Raises:
        InvalidKey: It is neither, naming ``where``.
    """
    value = text.strip()
    if value.startswith("U") and len(value) == 56:
        raw = _nkey_raw(value)
        if raw is None or raw[0] != _NKEY_USER or len(raw) != 33:
            raise InvalidKey(f"{where}: {value!r} is not a valid NKey user public key")
        return b64url(raw[1:])
    raw = _unb64(value)
    if raw is None or len(raw) != 32:
        raise InvalidKey(
            f"{where}: {value[:60]!r} is not a key id (the 32-byte Ed25519 public key in "
            "base64url, 43 characters) nor an NKey user public key (U…, 56 characters)"
        )
    return b64url(raw)


def public_key(kid: str) -> VerifyKey:
    """The public key a (valid) key id names."""
    raw = _unb64(kid)
    if raw is None or len(raw) != 32:
        raise InvalidKey(f"{kid[:60]!r} is not a key id")
    return VerifyKey(raw)


def verify(key: VerifyKey, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is ``key``'s Ed25519 signature of ``data``."""
    try:
        key.verify(data, signature)
    except BadSignatureError:
        return False
    return True


class PrivateKey:
    """An agent's Ed25519 signing key; its repr and str show the key id only.

    Args:
        key: The private key.
        source: Where it was read from, for messages (a path, never the key).
    """

    __slots__ = ("_key", "key_id", "public", "source")

    def __init__(self, key: SigningKey, source: str = "memory") -> None:
        self._key = key
        self.public = key.verify_key
        self.key_id = key_id(self.public)
        self.source = source

    @classmethod
    def from_seed(cls, seed: bytes, source: str = "memory") -> PrivateKey:
        """The key of a 32-byte Ed25519 seed (RFC 8032's private key)."""
        return cls(SigningKey(seed), source)

    @classmethod
    def generate(cls) -> PrivateKey:
        """A new random key."""
        return cls(SigningKey.generate())

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self._key.sign(data).signature

    def seed_text(self) -> str:
        """The seed in base64url, to write a key file (the one way out of the secret)."""
        return b64url(bytes(self._key))

    def __repr__(self) -> str:
        return f"PrivateKey(key_id={self.key_id!r}, source={self.source!r})"


def read_private_key(path: Path) -> PrivateKey:
    """Read an agent's private key from ``path`` (see the module's formats).

    A file that others may read gets a warning: it holds a secret.

    Raises:
        InvalidKey: The file is missing or holds none of the formats, naming the file.
    """
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode
    except OSError as exc:
        raise InvalidKey(f"signing key file {path}: cannot read it ({exc.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "signing key file %s can be read by others (mode %o): chmod 600 it",
            path,
            stat.S_IMODE(mode),
        )
    text = data.decode("ascii", errors="replace").strip()
    source = str(path)
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError):
            key = None
        if not isinstance(key, Ed25519PrivateKey):
            raise InvalidKey(
                f"signing key file {path}: its PEM block is not an unencrypted Ed25519 "
                "private key (openssl genpkey -algorithm ed25519)"
            )
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return PrivateKey.from_seed(seed, source)
    if text.startswith("S") and len(text) == 58:  # (a base64url seed is 43 characters)
        raw = _nkey_raw(text)
        if raw is None or len(raw) != 34 or raw[0] & 0xF8 != _NKEY_SEED:
            raise InvalidKey(f"signing key file {path}: not a valid NKey seed (bad checksum?)")
        kind = ((raw[0] & 0x07) << 5) | (raw[1] >> 3)
        if kind != _NKEY_USER:
            raise InvalidKey(f"signing key file {path}: an NKey seed, but not a user's (SU…)")
        return PrivateKey.from_seed(raw[2:], source)
    raw = _unb64(text)
    if raw is not None and len(raw) == 32:
        return PrivateKey.from_seed(raw, source)
    raise InvalidKey(
        f"signing key file {path}: holds no key aclbus reads (an NKey user seed SU…, a PEM "
        "Ed25519 private key, or a 32-byte seed in base64url)"
    )
