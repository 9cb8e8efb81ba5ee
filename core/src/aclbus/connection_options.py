"""What a backend's connection uses that plugins contribute: TLS and credentials.

Plugins return a `ConnectionOptions` from the ``aclbus_connection_options`` hook (the
first-party ``aclbus-tls`` and ``aclbus-auth`` do, from ``ACLBUS_TLS__*`` and
``ACLBUS_AUTH__*``); the plugin manager joins them, and the bus hands the result to its backend
with `aclbus.Backend.configure_connection` before it connects. The types are backend-neutral:
the NATS backend maps them to FastStream's security objects, a Kafka backend would map them to
its own; the memory backend has no connection and ignores them.

Every value carries the name of the setting it came from (``ACLBUS_TLS__CA_FILE``), so that a
backend's refusal messages name what the user set. Secrets are `pydantic.SecretStr`: a repr
shows ``**********``.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from aclbus.errors import ConfigurationError

__all__ = [
    "ConnectionOptions",
    "CredsFile",
    "Credentials",
    "NKeySeedFile",
    "TLSNames",
    "TLSOptions",
    "Token",
    "UserPassword",
]


@dataclass(frozen=True, slots=True)
class TLSNames:
    """The names of the settings a `TLSOptions` came from, for messages that name them.

    The defaults are the ``aclbus-tls`` plugin's variables; they are also what a backend names
    when no plugin gave TLS at all ("set ACLBUS_TLS__CA_FILE").
    """

    ca_file: str = "ACLBUS_TLS__CA_FILE"
    cert_file: str = "ACLBUS_TLS__CERT_FILE"
    key_file: str = "ACLBUS_TLS__KEY_FILE"
    handshake_first: str = "ACLBUS_TLS__HANDSHAKE_FIRST"


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """TLS of the connection: the files that make the context, or a context made already.

    Attributes:
        ca_file: CA bundle that signed the server's certificate; None: the system's CAs.
        cert_file: Client certificate, for mutual TLS.
        key_file: Its private key (only the path is held, never the key).
        handshake_first: Start TLS before the server's first message (nats-server's
            ``handshake_first``, a TLS-terminating proxy).
        context: A ready `ssl.SSLContext` to use instead of the files (which then only name
            what the messages show).
        names: The settings the values came from.
    """

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    handshake_first: bool = False
    context: ssl.SSLContext | None = field(default=None, compare=False)
    names: TLSNames = field(default_factory=TLSNames)

    def __post_init__(self) -> None:
        if self.key_file is not None and self.cert_file is None:
            raise ConfigurationError(
                f"{self.names.key_file} is set without {self.names.cert_file}: a client key "
                "needs its certificate"
            )

    def settings_used(self) -> str:
        """The settings that set this TLS (``ACLBUS_TLS__CA_FILE, ...``), for messages."""
        names = [
            getattr(self.names, f)
            for f in ("ca_file", "cert_file", "key_file")
            if getattr(self, f) is not None
        ]
        if self.handshake_first:
            names.append(self.names.handshake_first)
        return ", ".join(names) or "a TLS context"

    def ssl_context(self) -> ssl.SSLContext:
        """The context to connect with: `context`, or one made from the files.

        The server's certificate is checked against ``ca_file`` (or the system's CAs) and the
        host of the server URL; ``cert_file`` and ``key_file`` are the client's certificate.

        Raises:
            ConfigurationError: A file cannot be read or holds no certificate (or key),
                naming the setting and the path, never the content.
        """
        if self.context is not None:
            return self.context
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"{self.names.ca_file} ({self.ca_file}) is not a readable CA bundle: {_why(exc)}"
            ) from None
        if self.cert_file is not None:
            try:
                context.load_cert_chain(
                    str(self.cert_file), str(self.key_file) if self.key_file else None
                )
            except (OSError, ssl.SSLError) as exc:
                key = f" and {self.names.key_file} ({self.key_file})" if self.key_file else ""
                raise ConfigurationError(
                    f"{self.names.cert_file} ({self.cert_file}){key} are not a readable "
                    f"certificate and matching key: {_why(exc)}"
                ) from None
        return context


def _why(exc: OSError | ssl.SSLError) -> str:
    # OSError's text is "[Errno 2] No such file or directory"; an SSLError's reason a code.
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc.strerror or type(exc).__name__).lower().replace("_", " ")
    return exc.strerror or type(exc).__name__


@dataclass(frozen=True, slots=True)
class UserPassword:
    """A user name and its password.

    Attributes:
        user: The user name.
        password: Its password (None: the user alone).
        user_setting: The setting the user came from.
        password_setting: The setting the password came from.
    """

    user: str
    password: SecretStr | None = None
    user_setting: str = "ACLBUS_AUTH__USER"
    password_setting: str = "ACLBUS_AUTH__PASSWORD"

    @property
    def settings(self) -> tuple[str, ...]:
        """The settings these credentials came from."""
        if self.password is None:
            return (self.user_setting,)
        return (self.user_setting, self.password_setting)


@dataclass(frozen=True, slots=True)
class Token:
    """A token.

    Attributes:
        token: The token.
        setting: The setting it came from.
    """

    token: SecretStr
    setting: str = "ACLBUS_AUTH__TOKEN"

    @property
    def settings(self) -> tuple[str, ...]:
        """The settings these credentials came from."""
        return (self.setting,)


@dataclass(frozen=True, slots=True)
class NKeySeedFile:
    """A file holding an NKey user seed (``SU...``); the server knows its public key.

    Attributes:
        path: The file (only its path is held, never the seed).
        setting: The setting it came from.
    """

    path: Path
    setting: str = "ACLBUS_AUTH__NKEY_SEED_FILE"

    @property
    def settings(self) -> tuple[str, ...]:
        """The settings these credentials came from."""
        return (self.setting,)


@dataclass(frozen=True, slots=True)
class CredsFile:
    """A ``.creds`` file: a user JWT and its NKey seed (NATS operator mode).

    Attributes:
        path: The file (only its path is held).
        setting: The setting it came from.
    """

    path: Path
    setting: str = "ACLBUS_AUTH__CREDS_FILE"

    @property
    def settings(self) -> tuple[str, ...]:
        """The settings these credentials came from."""
        return (self.setting,)


Credentials = UserPassword | Token | NKeySeedFile | CredsFile
"""One way to authenticate."""


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """What a backend's connection uses beyond its own settings.

    A plugin returns one with what it gives (TLS, credentials or both); the plugin manager
    joins them into one, with ``sources`` naming the plugin that gave each part.

    Attributes:
        tls: TLS, or None for the backend's default (a ``tls://`` URL still uses TLS).
        credentials: One way to authenticate, or None.
        sources: ``{"tls": plugin, "credentials": plugin}`` for the parts a plugin gave.
    """

    tls: TLSOptions | None = None
    credentials: Credentials | None = None
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def empty(self) -> bool:
        """True when there is neither TLS nor credentials."""
        return self.tls is None and self.credentials is None
