"""Credentials and TLS of the NATS connection, from ``ACLBUS_NATS__*``, as FastStream takes them."""

from __future__ import annotations

from faststream.nats import (
    NatsCredentials,
    NatsNKey,
    NatsSecurity,
    NatsToken,
    NatsUserPassword,
)

from aclbus.errors import ConfigurationError
from aclbus_nats.settings import NatsSettings

__all__ = ["security"]


def security(n: NatsSettings) -> NatsSecurity | None:
    """Credentials and TLS as FastStream's ``security`` object; None when there are neither.

    FastStream 0.7's `NatsBroker` takes no ``user``/``password``/``tls`` arguments: one
    security object carries the credentials and the TLS context together.

    Args:
        n: The connection settings.

    Raises:
        ConfigurationError: More than one way to authenticate is set, or an NKey or creds
            file without the nkeys package.
    """
    methods = [
        name
        for name, value in (
            ("user", n.user),
            ("token", n.token),
            ("creds_file", n.creds_file),
            ("nkey_seed_file", n.nkey_seed_file),
        )
        if value is not None
    ]
    if len(methods) > 1:
        raise ConfigurationError(
            f"ACLBUS_NATS__ sets {', '.join(methods)}: choose one way to authenticate"
        )
    context = None
    if n.tls_ca_file or n.tls_cert_file:
        import ssl

        context = ssl.create_default_context(cafile=str(n.tls_ca_file) if n.tls_ca_file else None)
        if n.tls_cert_file:
            context.load_cert_chain(
                str(n.tls_cert_file), str(n.tls_key_file) if n.tls_key_file else None
            )
    try:
        if n.user is not None:
            password = n.password.get_secret_value() if n.password else ""
            return NatsUserPassword(n.user, password, ssl_context=context)
        if n.token is not None:
            return NatsToken(n.token.get_secret_value(), ssl_context=context)
        if n.creds_file is not None:
            return NatsCredentials.from_file(n.creds_file, ssl_context=context)
        if n.nkey_seed_file is not None:
            return NatsNKey.from_file(n.nkey_seed_file, ssl_context=context)
    except ImportError as exc:  # NKey and creds files need the nkeys package
        raise ConfigurationError(f"{methods[0]} needs the nkeys package: {exc}") from None
    return NatsSecurity(ssl_context=context) if context is not None else None
