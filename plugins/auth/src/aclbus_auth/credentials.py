"""Who the connection authenticates as: `AuthSettings`' credentials as connection options.

One way to authenticate at a time: ``user`` (with ``password``), ``token``, ``nkey_seed_file``
or ``creds_file``; two are a `ConfigurationError` naming them. A seed or creds file holds a
private key: one that the file's group or others may read gets a warning (once per file and
process) naming the file and the fix, never its content.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

from aclbus import ConnectionOptions
from aclbus.connection_options import (
    Credentials,
    CredsFile,
    NKeySeedFile,
    Token,
    UserPassword,
)
from aclbus.errors import ConfigurationError
from aclbus_auth.settings import AuthSettings

__all__ = ["check_private", "connection_options", "credentials"]

log = logging.getLogger("aclbus.auth")

_WAYS = {
    "user": "ACLBUS_AUTH__USER",
    "token": "ACLBUS_AUTH__TOKEN",
    "nkey_seed_file": "ACLBUS_AUTH__NKEY_SEED_FILE",
    "creds_file": "ACLBUS_AUTH__CREDS_FILE",
}
_warned: set[Path] = set()  # files already warned about in this process


def credentials(settings: AuthSettings) -> Credentials | None:
    """The one way to authenticate that ``settings`` give; None when they give none.

    Raises:
        ConfigurationError: More than one way is set, a password without a user, or a seed
            or creds file that does not exist or cannot be read.
    """
    ways = [name for name in _WAYS if getattr(settings, name) is not None]
    if (
        "user" in ways
        and settings.password is None
        and settings.policy_file is not None
        and len(ways) == 2
        and ("nkey_seed_file" in ways or "creds_file" in ways)
    ):
        # A policy's user who logs in with an NKey or a creds file: the user names who the
        # bus is in the policy, the file is how it authenticates.
        ways.remove("user")
    if len(ways) > 1:
        raise ConfigurationError(
            f"{', '.join(_WAYS[w] for w in ways)} are all set: choose one way to authenticate"
        )
    if "user" in ways:
        return UserPassword(settings.user or "", settings.password)
    if settings.password is not None:
        raise ConfigurationError(
            "ACLBUS_AUTH__PASSWORD is set without ACLBUS_AUTH__USER: a password needs its user"
        )
    if settings.token is not None:
        if not settings.token.get_secret_value():
            raise ConfigurationError("ACLBUS_AUTH__TOKEN is empty")
        return Token(settings.token)
    if settings.nkey_seed_file is not None:
        check_private(settings.nkey_seed_file, "ACLBUS_AUTH__NKEY_SEED_FILE")
        return NKeySeedFile(settings.nkey_seed_file)
    if settings.creds_file is not None:
        check_private(settings.creds_file, "ACLBUS_AUTH__CREDS_FILE")
        return CredsFile(settings.creds_file)
    return None


def connection_options(settings: AuthSettings) -> ConnectionOptions | None:
    """The connection options of ``settings``: their credentials, or None for none.

    Raises:
        ConfigurationError: As `credentials`.
    """
    given = credentials(settings)
    return None if given is None else ConnectionOptions(credentials=given)


def check_private(path: Path, setting: str) -> None:
    """Warn (once per file) when a file holding a secret may be read by its group or others.

    Args:
        path: The seed or creds file.
        setting: The setting that names it, for the messages.

    Raises:
        ConfigurationError: The file does not exist or is not a file.
    """
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigurationError(
            f"{setting} ({path}) cannot be read: {exc.strerror or type(exc).__name__}"
        ) from None
    if not stat.S_ISREG(mode):
        raise ConfigurationError(f"{setting} ({path}) is not a file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO) and path not in _warned:
        _warned.add(path)
        log.warning(
            "%s (%s) may be read by its group or by others (mode %s): it holds a private "
            "key; make it readable by its owner only: chmod 600 %s",
            setting,
            path,
            stat.filemode(mode),
            path,
        )
