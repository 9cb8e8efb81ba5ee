"""Credentials and TLS of the NATS connection as FastStream takes them, and refusals in words.

The options come from the plugins (``aclbus-tls``, ``aclbus-auth``) or the deprecated
``ACLBUS_NATS__*`` settings (`aclbus_nats.deprecated`), as `ConnectionOptions` that name the
setting of each value: the refusal messages name what was actually used.
"""

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

__all__ = ["auth_refusal", "described", "not_tls", "security", "tls_refusal"]


def described(options: ConnectionOptions, policy_user: str | None) -> dict[str, object]:
    """How the connection authenticates and what TLS it uses, by setting: never a secret.

    What ``aclbus doctor`` shows under ``server.security``: the kind of login, the setting
    (and file path) it came from, the TLS settings in use, and the policy's user if any.
    """
    c = options.credentials
    login: dict[str, object]
    if isinstance(c, UserPassword):
        login = {"mode": "user and password", "user": c.user, "settings": [c.user_setting]}
        if c.password is not None:
            login["settings"] = [c.user_setting, c.password_setting]
    elif isinstance(c, Token):
        login = {"mode": "token", "settings": [c.setting]}
    elif isinstance(c, NKeySeedFile):
        login = {"mode": "nkey", "settings": [c.setting], "file": str(c.path)}
    elif isinstance(c, CredsFile):
        login = {"mode": "creds (user JWT)", "settings": [c.setting], "file": str(c.path)}
    else:
        login = {"mode": "none"}
    tls = options.tls
    return {
        "authentication": login,
        "tls": None if tls is None else tls.settings_used(),
        "policy_user": policy_user,
    }


def security(options: ConnectionOptions) -> NatsSecurity | None:
    """Credentials and TLS as FastStream's ``security`` object; None when there are neither.

    FastStream 0.7's `NatsBroker` takes no ``user``/``password``/``tls`` arguments: one
    security object carries the credentials and the TLS context together.

    Args:
        options: The connection's options.

    Raises:
        ConfigurationError: A TLS file cannot be read, or an NKey or creds file without the
            nkeys package.
    """
    tls = options.tls
    context = tls.ssl_context() if tls is not None else None
    first = tls.handshake_first if tls is not None else False
    c = options.credentials
    try:
        if isinstance(c, UserPassword):
            password = c.password.get_secret_value() if c.password else ""
            return NatsUserPassword(
                c.user, password, ssl_context=context, tls_handshake_first=first
            )
        if isinstance(c, Token):
            return NatsToken(
                c.token.get_secret_value(), ssl_context=context, tls_handshake_first=first
            )
        if isinstance(c, CredsFile):
            return NatsCredentials.from_file(c.path, ssl_context=context, tls_handshake_first=first)
        if isinstance(c, NKeySeedFile):
            return NatsNKey.from_file(c.path, ssl_context=context, tls_handshake_first=first)
    except ImportError as exc:  # NKey and creds files need the nkeys package
        assert c is not None
        raise ConfigurationError(f"{c.settings[0]} needs the nkeys package: {exc}") from None
    if context is None and not first:
        return None
    return NatsSecurity(ssl_context=context, tls_handshake_first=first)


# OpenSSL's verify codes (X509_V_ERR_*) of a server certificate no trusted CA signed.
_UNTRUSTED = {2, 18, 19, 20, 21}
_EXPIRED, _NOT_YET_VALID = 10, 9
_HOST_MISMATCH = {62, 64}  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH


def tls_refusal(exc: BaseException, tls: TLSOptions | None) -> str | None:
    """What a refused TLS handshake says is wrong, in words; None for any other error.

    A refused certificate stays refused however often the client connects again: the caller
    gives up at once. The words name the setting to look at, never a key.

    Args:
        exc: An error of the connection, as nats-py reports it.
        tls: The connection's TLS options (None: none given; the messages then name the
            ``aclbus-tls`` plugin's settings).

    Returns:
        The problem, or None when ``exc`` is not a refused certificate.
    """
    names = tls.names if tls is not None else TLSNames()
    cert_file = tls.cert_file if tls is not None else None
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _server_refused(exc, tls, names)
    reason = exc.reason if isinstance(exc, ssl.SSLError) else None
    if reason == "WRONG_VERSION_NUMBER" and tls is not None and tls.handshake_first:
        # Our ClientHello was answered with something that is no TLS record: the INFO line.
        return (
            f"the server answered the TLS handshake in plain text ({names.handshake_first} "
            "is on): it does not speak TLS first; give its tls {} block handshake_first: "
            f"true, or turn {names.handshake_first} off"
        )
    if not reason or "ALERT" not in reason:
        return None
    # The server's alert: it refused our certificate, or wanted one and got none.
    if cert_file is None and ("CERTIFICATE" in reason or "HANDSHAKE_FAILURE" in reason):
        return (
            "the server requires a client certificate (mutual TLS) and none is set: set "
            f"{names.cert_file} and {names.key_file}"
        )
    if cert_file is not None and ("CERTIFICATE" in reason or "UNKNOWN_CA" in reason):
        return (
            f"the server refused the client certificate of {names.cert_file} ({cert_file}): "
            f"{_alert(reason)}"
        )
    return None


# The server's alert, as OpenSSL names it, and what it means for the client's certificate.
_ALERTS = {
    "TLSV1_ALERT_UNKNOWN_CA": "it is not signed by a CA the server trusts (its ca_file)",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "it has expired, or is not valid yet",
    "SSLV3_ALERT_BAD_CERTIFICATE": (
        "the server rejected it (not valid yet, expired, or not for client authentication)"
    ),
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the server rejected it",
}


def _alert(reason: str) -> str:
    meaning = _ALERTS.get(reason)
    said = reason.lower().replace("_", " ")
    return f"{meaning} ({said})" if meaning else said


def not_tls(where: str, tls: TLSOptions | None) -> str:
    """The problem of a server that does not offer TLS to a client that wants it.

    Args:
        where: The server, as ``host:port``.
        tls: The client's TLS options (None: the URL is ``tls://``).
    """
    names = tls.names if tls is not None else TLSNames()
    why = (
        f"TLS is configured ({tls.settings_used()})"
        if tls is not None
        else "the server URL is tls://"
    )
    return (
        f"the server at {where} does not speak TLS (its INFO has no tls_required), and "
        f"{why}: nothing was sent to it. Give the server a tls {{}} block, or connect "
        f"without TLS (unset {names.ca_file} and the other TLS settings, nats:// URL)"
    )


def _server_refused(
    exc: ssl.SSLCertVerificationError, tls: TLSOptions | None, names: TLSNames
) -> str:
    code, said = exc.verify_code, str(exc.verify_message or exc.reason or exc)
    ca_file = tls.ca_file if tls is not None else None
    if code in _UNTRUSTED:
        if ca_file is not None:
            return (
                f"the server's certificate is not signed by the CA in {names.ca_file} ({ca_file})"
            )
        return (
            "the server's certificate is not signed by a CA this system trusts, and "
            f"{names.ca_file} is not set (the server requires TLS, or the URL is "
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


def auth_refusal(
    exc: BaseException,
    credentials: Credentials | None,
    servers: list[str],
    tls: TLSOptions | None = None,
) -> str | None:
    """What a refused authentication says is wrong, in words; None for any other error.

    nats-server answers a CONNECT with credentials it does not accept (or with none where it
    wants some) with ``-ERR 'Authorization Violation'``: nats-py raises it as a plain `Error`
    during the connect, or as `AuthorizationError` once connected. The same credentials are
    refused again on every attempt, so the caller gives up at once. The words name the
    setting that was used, never its secret.

    Args:
        exc: An error of the connection, as nats-py reports it.
        credentials: The connection's credentials, naming their settings.
        servers: The server URLs (which may hold ``user:password@``).
        tls: The connection's TLS: with a client certificate and no credentials, the server
            that refused maps certificates to users (``verify_and_map``) and knows none for it.

    Returns:
        The problem, or None when ``exc`` is not a refused authentication.
    """
    refused = isinstance(exc, AuthorizationError) or (
        isinstance(exc, NatsError) and _AUTHORIZATION_VIOLATION in str(exc).lower()
    )
    if not refused:
        return None
    problem = _refused_credentials(credentials, servers)
    if credentials is None and tls is not None and tls.cert_file is not None:
        problem = (
            f"the server maps no user it knows to the client certificate of "
            f"{tls.names.cert_file} ({tls.cert_file}) (verify_and_map: the user is the "
            "certificate's SAN email, DNS name or subject), or it wants credentials: "
            + problem.removeprefix("the server requires authentication and none is set: ")
        )
    return f"{problem} (the server said: Authorization Violation)"


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


def _refused_credentials(c: Credentials | None, servers: list[str]) -> str:
    if isinstance(c, Token):
        return f"the server does not accept the token of {c.setting}"
    if isinstance(c, NKeySeedFile):
        return f"the server knows no user with the NKey of the seed in {c.setting} ({c.path})"
    if isinstance(c, CredsFile):
        expired = _creds_expired_at(c.path)
        return f"the server does not accept the credentials of {c.setting} ({c.path})" + (
            f": its user JWT expired at {expired}" if expired else ""
        )
    if isinstance(c, UserPassword):
        if c.password is None:
            return (
                f"the server does not accept user {c.user!r} without a password "
                f"({c.user_setting} is set, {c.password_setting} is not)"
            )
        return (
            f"the server does not accept user {c.user!r} with the password of {c.password_setting}"
        )
    if any("@" in url for url in servers):
        return "the server does not accept the credentials in the server URL (ACLBUS_NATS__SERVERS)"
    return (
        "the server requires authentication and none is set: set ACLBUS_AUTH__TOKEN, "
        "ACLBUS_AUTH__USER and ACLBUS_AUTH__PASSWORD, ACLBUS_AUTH__NKEY_SEED_FILE or "
        "ACLBUS_AUTH__CREDS_FILE (the aclbus-auth plugin)"
    )
