"""The deprecated ``ACLBUS_NATS__`` TLS and credential settings, as connection options.

TLS and credentials moved to the ``aclbus-tls`` and ``aclbus-auth`` plugins
(``ACLBUS_TLS__*``, ``ACLBUS_AUTH__*``), which every backend's connection uses. The old
``ACLBUS_NATS__TLS_*``, ``USER``, ``PASSWORD``, ``TOKEN``, ``NKEY_SEED_FILE`` and
``CREDS_FILE`` keep working: a backend made with any of them gives one `DeprecationWarning`
and one log line naming the new setting of each, and the refusal messages name the old
setting, since that is what was used.
Setting a part (TLS, or credentials) both ways is a `ConfigurationError`.
"""

from __future__ import annotations

import logging
import warnings

from aclbus.connection_options import (
    ConnectionOptions,
    Credentials,
    CredsFile,
    NKeySeedFile,
    TLSNames,
    TLSOptions,
    Token,
    UserPassword,
)
from aclbus.errors import ConfigurationError
from aclbus_nats.settings import NatsSettings

__all__ = ["RENAMED", "join", "legacy_options"]

log = logging.getLogger("aclbus.nats")

RENAMED: dict[str, str] = {
    "tls_ca_file": "ACLBUS_TLS__CA_FILE",
    "tls_cert_file": "ACLBUS_TLS__CERT_FILE",
    "tls_key_file": "ACLBUS_TLS__KEY_FILE",
    "user": "ACLBUS_AUTH__USER",
    "password": "ACLBUS_AUTH__PASSWORD",
    "token": "ACLBUS_AUTH__TOKEN",
    "nkey_seed_file": "ACLBUS_AUTH__NKEY_SEED_FILE",
    "creds_file": "ACLBUS_AUTH__CREDS_FILE",
}
"""Each deprecated `NatsSettings` field and the setting that replaces it."""

_TLS = ("tls_ca_file", "tls_cert_file", "tls_key_file")
_CREDENTIALS = ("user", "password", "token", "nkey_seed_file", "creds_file")


def _old(field: str) -> str:
    return f"ACLBUS_NATS__{field.upper()}"


def legacy_options(n: NatsSettings) -> ConnectionOptions:
    """The TLS and credentials the deprecated fields of ``n`` set, naming those fields.

    Raises:
        ConfigurationError: More than one way to authenticate is set.
    """
    used = [f for f in (*_TLS, *_CREDENTIALS) if getattr(n, f) is not None]
    if used:
        _deprecated(used)
    tls = None
    if any(getattr(n, f) is not None for f in _TLS):
        tls = TLSOptions(
            ca_file=n.tls_ca_file,
            cert_file=n.tls_cert_file,
            key_file=n.tls_key_file,
            names=TLSNames(
                ca_file=_old("tls_ca_file"),
                cert_file=_old("tls_cert_file"),
                key_file=_old("tls_key_file"),
            ),
        )
    ways = [f for f in ("user", "token", "creds_file", "nkey_seed_file") if f in used]
    if len(ways) > 1:
        raise ConfigurationError(
            f"{', '.join(_old(f) for f in ways)} are all set: choose one way to authenticate"
        )
    credentials: Credentials | None = None
    if n.user is not None:
        credentials = UserPassword(n.user, n.password, _old("user"), _old("password"))
    elif n.token is not None:
        credentials = Token(n.token, _old("token"))
    elif n.creds_file is not None:
        credentials = CredsFile(n.creds_file, _old("creds_file"))
    elif n.nkey_seed_file is not None:
        credentials = NKeySeedFile(n.nkey_seed_file, _old("nkey_seed_file"))
    elif n.password is not None:
        raise ConfigurationError(
            f"{_old('password')} is set without {_old('user')}: a password needs its user"
        )
    return ConnectionOptions(tls=tls, credentials=credentials)


def join(plugins: ConnectionOptions, legacy: ConnectionOptions) -> ConnectionOptions:
    """The plugins' options with the deprecated settings' parts added.

    Raises:
        ConfigurationError: A part is given both ways, naming the settings of each.
    """
    if legacy.empty:
        return plugins
    if plugins.tls is not None and legacy.tls is not None:
        old = [_old(f) for f in _TLS if _set(legacy.tls, f)]
        raise ConfigurationError(
            f"TLS is set twice: by {', '.join(old)} (deprecated) and by the "
            f"{plugins.sources.get('tls', 'tls')!r} plugin ({plugins.tls.settings_used()}); "
            "remove the ACLBUS_NATS__TLS_* settings"
        )
    if plugins.credentials is not None and legacy.credentials is not None:
        raise ConfigurationError(
            f"credentials are set twice: by {', '.join(legacy.credentials.settings)} "
            f"(deprecated) and by the {plugins.sources.get('credentials', 'auth')!r} plugin "
            f"({', '.join(plugins.credentials.settings)}); remove the deprecated ones"
        )
    sources = dict(plugins.sources)
    if legacy.tls is not None:
        sources["tls"] = "ACLBUS_NATS__ (deprecated)"
    if legacy.credentials is not None:
        sources["credentials"] = "ACLBUS_NATS__ (deprecated)"
    return ConnectionOptions(
        tls=plugins.tls or legacy.tls,
        credentials=plugins.credentials or legacy.credentials,
        sources=sources,
    )


def _set(tls: TLSOptions, field: str) -> bool:
    return getattr(tls, field.removeprefix("tls_")) is not None


def _deprecated(fields: list[str]) -> None:
    # One warning and one log line per backend made, naming every deprecated setting used.
    message = (
        "deprecated settings: "
        + ", ".join(f"{_old(f)} (set {RENAMED[f]} instead)" for f in fields)
        + "; TLS moved to the aclbus-tls plugin, credentials to aclbus-auth, and the old "
        "settings still work for now"
    )
    warnings.warn(message, DeprecationWarning, stacklevel=4)
    log.warning("%s", message)
