"""Credentials and TLS of the NATS connection, from ``ACLBUS_NATS__*``, as FastStream takes them."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import ssl
import time
from pathlib import Path

from faststream.nats import (
    NatsCredentials,
    NatsNKey,
    NatsSecurity,
    NatsToken,
    NatsUserPassword,
)
from nats.errors import AuthorizationError
from nats.errors import Error as NatsError

from aclbus.errors import ConfigurationError
from aclbus_nats.settings import NatsSettings

__all__ = ["auth_refusal", "security", "tls_refusal"]


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


# OpenSSL's verify codes (X509_V_ERR_*) of a server certificate no trusted CA signed.
_UNTRUSTED = {2, 18, 19, 20, 21}
_EXPIRED, _NOT_YET_VALID = 10, 9
_HOST_MISMATCH = {62, 64}  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH


def tls_refusal(exc: BaseException, n: NatsSettings) -> str | None:
    """What a refused TLS handshake says is wrong, in words; None for any other error.

    A refused certificate stays refused however often the client connects again: the caller
    gives up at once. The words name the setting to look at, never a key.

    Args:
        exc: An error of the connection, as nats-py reports it.
        n: The connection settings.

    Returns:
        The problem, or None when ``exc`` is not a refused certificate.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _server_refused(exc, n)
    reason = exc.reason if isinstance(exc, ssl.SSLError) else None
    if not reason or "ALERT" not in reason:
        return None
    # The server's alert: it refused our certificate, or wanted one and got none.
    if n.tls_cert_file is None and ("CERTIFICATE" in reason or "HANDSHAKE_FAILURE" in reason):
        return (
            "the server requires a client certificate (mutual TLS) and none is set: set "
            "ACLBUS_NATS__TLS_CERT_FILE and ACLBUS_NATS__TLS_KEY_FILE"
        )
    if n.tls_cert_file is not None and ("CERTIFICATE" in reason or "UNKNOWN_CA" in reason):
        return (
            "the server refused the client certificate of ACLBUS_NATS__TLS_CERT_FILE "
            f"({reason.lower().replace('_', ' ')})"
        )
    return None


def _server_refused(exc: ssl.SSLCertVerificationError, n: NatsSettings) -> str:
    code, said = exc.verify_code, str(exc.verify_message or exc.reason or exc)
    if code in _UNTRUSTED:
        if n.tls_ca_file is not None:
            return (
                "the server's certificate is not signed by the CA in ACLBUS_NATS__TLS_CA_FILE "
                f"({n.tls_ca_file})"
            )
        return (
            "the server's certificate is not signed by a CA this system trusts, and "
            "ACLBUS_NATS__TLS_CA_FILE is not set (the server requires TLS, or the URL is "
            "tls://): set it to the CA that signed the server's certificate"
        )
    if code == _EXPIRED:
        return "the server's certificate has expired"
    if code == _NOT_YET_VALID:
        return "the server's certificate is not valid yet (is a clock wrong?)"
    if code in _HOST_MISMATCH:
        found = re.search(r"'([^']*)'", said)
        host = found.group(1) if found else "the host of the server URL"
        return (
            f"hostname mismatch: the server's certificate is not for {host}, the host in the "
            "server URL; connect with a name the certificate holds, or give the server a "
            "certificate for this one"
        )
    return f"the server's certificate is refused: {said}"


# nats-server's -ERR for credentials it does not accept, or for none where it wants some.
_AUTHORIZATION_VIOLATION = "authorization violation"


def auth_refusal(exc: BaseException, n: NatsSettings) -> str | None:
    """What a refused authentication says is wrong, in words; None for any other error.

    nats-server answers a CONNECT with credentials it does not accept (or with none where it
    wants some) with ``-ERR 'Authorization Violation'``: nats-py raises it as a plain `Error`
    during the connect, or as `AuthorizationError` once connected. The same credentials are
    refused again on every attempt, so the caller gives up at once. The words name the
    setting that was used, never its secret.

    Args:
        exc: An error of the connection, as nats-py reports it.
        n: The connection settings.

    Returns:
        The problem, or None when ``exc`` is not a refused authentication.
    """
    refused = isinstance(exc, AuthorizationError) or (
        isinstance(exc, NatsError) and _AUTHORIZATION_VIOLATION in str(exc).lower()
    )
    if not refused:
        return None
    return f"{_refused_credentials(n)} (the server said: Authorization Violation)"


def _creds_expired_at(path: Path) -> str | None:
    """When the user JWT of a creds file expired, if it has; None when unreadable or valid.

    nats-server refuses an expired JWT with the same Authorization Violation as any other:
    the JWT's own ``exp`` (a public claim, not the seed) tells the two apart.
    """
    try:
        lines = path.read_text().splitlines()
        token = lines[lines.index("-----BEGIN NATS USER JWT-----") + 1].strip()
        body = token.split(".")[1]
        exp = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))).get("exp")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    if not isinstance(exp, int) or exp <= 0 or exp > time.time():
        return None
    return dt.datetime.fromtimestamp(exp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _refused_credentials(n: NatsSettings) -> str:
    if n.token is not None:
        return "the server does not accept the token of ACLBUS_NATS__TOKEN"
    if n.nkey_seed_file is not None:
        return (
            "the server knows no user with the NKey of the seed in ACLBUS_NATS__NKEY_SEED_FILE "
            f"({n.nkey_seed_file})"
        )
    if n.creds_file is not None:
        expired = _creds_expired_at(n.creds_file)
        return (
            "the server does not accept the credentials of ACLBUS_NATS__CREDS_FILE "
            f"({n.creds_file})" + (f": its user JWT expired at {expired}" if expired else "")
        )
    if n.user is not None:
        if n.password is None:
            return (
                f"the server does not accept user {n.user!r} without a password "
                "(ACLBUS_NATS__USER is set, ACLBUS_NATS__PASSWORD is not)"
            )
        return (
            f"the server does not accept user {n.user!r} with the password of ACLBUS_NATS__PASSWORD"
        )
    if any("@" in url for url in n.servers):
        return "the server does not accept the credentials in the server URL (ACLBUS_NATS__SERVERS)"
    return (
        "the server requires authentication and none is set: set ACLBUS_NATS__TOKEN, "
        "ACLBUS_NATS__USER and ACLBUS_NATS__PASSWORD, ACLBUS_NATS__NKEY_SEED_FILE or "
        "ACLBUS_NATS__CREDS_FILE"
    )
