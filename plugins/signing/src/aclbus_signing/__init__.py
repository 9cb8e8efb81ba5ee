"""aclbus-signing: signed envelopes, so a receiver can verify that ``sender_id`` sent a message.

Each agent holds an Ed25519 key. The sender signs the canonical form of the message's headers
and body (`aclbus_signing.canonical`, specified in ``docs/wire-format.md`` section 14) and adds
the headers ``aclbus-signature`` and ``aclbus-signature-key``; the receiver checks, before any
other middleware and the handler run, that the key is one of the sender's (pinned in a key
file, or published in the directory), that the signature matches, that the message is within
the timestamp window and not a replay (`aclbus_signing.verifier`). In mode ``require`` a message
failing a check is dead-lettered with reason ``bad-signature`` and nobody is answered; in mode
``warn`` it is logged and handled.

Settings: `SigningSettings` (``ACLBUS_SIGNING__*``, ``[signing]`` in ``aclbus.toml``); with the
default mode ``off`` the plugin adds nothing. Counters: ``aclbus_signing.stats(bus)``. The
guide: ``docs/security.md``, "Signed envelopes".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from aclbus.clock import SystemClock
from aclbus.errors import ConfigurationError
from aclbus.plugin import hookimpl
from aclbus_signing.canonical import (
    KEY_HEADER,
    PAYLOAD_TYPE,
    SIGNATURE_HEADER,
    CanonicalFormError,
    canonical,
    signing_input,
)
from aclbus_signing.keys import InvalidKey, PrivateKey, decode_key_id, read_private_key
from aclbus_signing.middleware import Signing, SigningStats
from aclbus_signing.settings import SigningSettings
from aclbus_signing.trust import METADATA_KEY, KeyRing, read_keys_file, with_signing_keys
from aclbus_signing.verifier import KeysUnavailable, SeenIds, SignatureRefused, Verifier

if TYPE_CHECKING:
    from aclbus import Bus
    from aclbus.middleware import MiddlewareFactory
    from aclbus.settings import Settings

__all__ = [
    "KEY_HEADER",
    "METADATA_KEY",
    "PAYLOAD_TYPE",
    "SIGNATURE_HEADER",
    "CanonicalFormError",
    "InvalidKey",
    "KeyRing",
    "KeysUnavailable",
    "PrivateKey",
    "SeenIds",
    "SignatureRefused",
    "Signing",
    "SigningSettings",
    "SigningStats",
    "Verifier",
    "canonical",
    "decode_key_id",
    "read_keys_file",
    "read_private_key",
    "signing_input",
    "stats",
    "with_signing_keys",
]


@hookimpl(tryfirst=True)  # outermost: verify before any other middleware sees the message
def aclbus_middlewares(settings: Settings) -> Sequence[MiddlewareFactory]:
    """`Signing`, unless the mode is ``off`` (the default)."""
    signing = SigningSettings()
    if signing.mode == "off":
        return []
    return [lambda bus: make_signing(bus, signing)]


def make_signing(bus: Bus, settings: SigningSettings) -> Signing:
    """The middleware for ``bus``: its keys read, its key ring built.

    Raises:
        InvalidKey: A key file or the pinned key file cannot be read.
        ConfigurationError: Neither a pinned key file nor the directory says whose keys are
            whose.
    """
    if settings.keys_file is None and not settings.directory:
        raise ConfigurationError(
            f"signing mode {settings.mode!r} needs to know senders' public keys: set "
            "ACLBUS_SIGNING__KEYS_FILE (a pinned key file) or ACLBUS_SIGNING__DIRECTORY=true"
        )
    default = read_private_key(settings.key_file) if settings.key_file is not None else None
    keys = {agent: read_private_key(path) for agent, path in settings.agent_key_files.items()}
    pinned = read_keys_file(settings.keys_file) if settings.keys_file is not None else {}
    # ce-time is the sender's wall clock, compared with the receiver's as ``acl-ttl`` is (a
    # memory backend's manual clock would disagree with every real timestamp).
    clock = SystemClock()
    ring = KeyRing(
        pinned, bus.directory if settings.directory else None, clock, settings.directory_ttl
    )
    verifier = Verifier(
        ring,
        clock,
        max_age=settings.max_age,
        max_skew=settings.max_skew,
        seen=SeenIds(settings.seen_ids),
    )
    return Signing(bus, settings, keys=keys, default=default, verifier=verifier)


def stats(bus: Bus) -> SigningStats:
    """The signing counters of ``bus``.

    Raises:
        ConfigurationError: The plugin is not active on ``bus`` (mode ``off``).
    """
    for middleware in bus.middlewares:
        if isinstance(middleware, Signing):
            return middleware.stats
    raise ConfigurationError("aclbus-signing is not active on this bus (ACLBUS_SIGNING__MODE)")
