"""Settings of the NATS backend: ``ACLBUS_NATS__*`` variables or the ``[nats]`` table of TOML.

With no ``servers`` configured, the backend starts an embedded nats-server on loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator

from aclbus.settings import CommaList, SectionSettings, section_config

__all__ = ["NatsSettings"]


class NatsSettings(SectionSettings):
    """How the NATS backend connects.

    Attributes:
        servers: Server URLs (``nats://host:4222``), comma-separated in the environment. Empty:
            start an embedded nats-server on loopback.
        embedded_store_dir: JetStream store of the embedded server; None: a temporary
            directory removed when the bus stops.
        name: Connection name shown by the server's monitoring.
        connect_timeout: Seconds to wait for a connection.
        reconnect_time_wait: Seconds between reconnect attempts to one server.
        reconnect_jitter: How much that pause varies, as a fraction (0.5: 50 % to 150 %), so
            that many clients do not reconnect in the same instant.
        max_reconnect_attempts: Reconnect attempts before giving up; -1: forever.
        reconnect_buffer: Bytes of outgoing messages kept while reconnecting; a publish that
            would overflow it fails at once with `BackendClosed` (nothing is dropped quietly).
        ping_interval: Seconds between pings: a hung server is noticed within
            ``ping_interval * (max_outstanding_pings + 1)`` (nats-py's default 120 s hides it).
        max_outstanding_pings: Unanswered pings before the connection counts as lost.
        publish_timeout: Seconds to wait for JetStream's PubAck.
        publish_retry_wait: Seconds to wait for the PubAck of a publish with a message id
            before sending it again (the same ``Nats-Msg-Id``, stored once), within
            ``publish_timeout``: a publish lost with a dying stream leader is resent soon
            after the new leader is elected, not only when the timeout ends.
        user: Deprecated: ``ACLBUS_AUTH__USER`` (the aclbus-auth plugin). User name.
        password: Deprecated: ``ACLBUS_AUTH__PASSWORD``. Password (never logged).
        token: Deprecated: ``ACLBUS_AUTH__TOKEN``. Token authentication (never logged).
        creds_file: Deprecated: ``ACLBUS_AUTH__CREDS_FILE``. A ``.creds`` file.
        nkey_seed_file: Deprecated: ``ACLBUS_AUTH__NKEY_SEED_FILE``. An NKey seed file.
        tls_ca_file: Deprecated: ``ACLBUS_TLS__CA_FILE`` (the aclbus-tls plugin). CA bundle
            that signed the server's certificate.
        tls_cert_file: Deprecated: ``ACLBUS_TLS__CERT_FILE``. Client certificate.
        tls_key_file: Deprecated: ``ACLBUS_TLS__KEY_FILE``. Client key.

    The deprecated fields still work (`aclbus_nats.deprecated`): a backend made with any of
    them warns once, naming the new settings.
    """

    model_config = section_config("nats")

    servers: CommaList = Field(default_factory=list)
    embedded_store_dir: Path | None = None
    name: str = "aclbus"
    connect_timeout: float = Field(default=5.0, gt=0)
    reconnect_time_wait: float = Field(default=0.5, ge=0)
    reconnect_jitter: float = Field(default=0.5, ge=0, le=1)
    max_reconnect_attempts: int = Field(default=-1, ge=-1)
    reconnect_buffer: int = Field(default=2 << 20, ge=0)
    ping_interval: float = Field(default=5.0, gt=0, le=60)
    max_outstanding_pings: int = Field(default=2, ge=1)
    publish_timeout: float = Field(default=5.0, gt=0)
    publish_retry_wait: float = Field(default=1.0, gt=0)
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    creds_file: Path | None = None
    nkey_seed_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @field_validator("servers")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            scheme = url.split("://", 1)[0] if "://" in url else ""
            if scheme not in ("nats", "tls", "ws", "wss"):
                raise ValueError(
                    f"server {_redact(url)!r} needs a nats://, tls://, ws:// or wss:// URL"
                )
        return value

    def masked_servers(self) -> list[str]:
        """The server URLs with any user:password part masked."""
        return [_redact(url) for url in self.servers]

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # A URL may hold a password (nats://user:secret@host): repr() and logs show it masked.
        for name, value in super().__repr_args__():
            yield name, self.masked_servers() if name == "servers" else value


def _redact(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
