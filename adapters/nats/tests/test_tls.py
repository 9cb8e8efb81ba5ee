"""TLS and mutual TLS against real nats-servers with ``tls {}`` blocks.

The certificates come from the ``certs`` fixture (conftest.py), the client's TLS settings from
``ACLBUS_TLS__*`` variables read by the aclbus-tls plugin. A refused certificate is a
`TLSError` at the first refused handshake, well within the connect timeout, naming what is
wrong and holding no key. Mutual TLS with ``verify_and_map``, ``handshake_first``, a plaintext
server and certificate rotation are in test_tls_modes.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

import aclbus_tls
from aclbus.bus import Bus
from aclbus.errors import BackendClosed, TLSError
from aclbus.settings import Settings, StreamLimits
from aclbus_nats.backend import NatsBackend
from aclbus_nats.connection import EofOverSSLFilter
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.settings import NatsSettings

from .conftest import Certs, Pair, round_trip

WAIT = 5.0
CONNECT_TIMEOUT = 2.0
# connect() gives up after connect_timeout * (servers + 1) at the latest; one server here.
BOUND = CONNECT_TIMEOUT * 2 + 1.0


def tls_block(pair: Pair, verify_with: Pair | None = None, *extra: str) -> str:
    lines = [f'  cert_file: "{pair.cert}"', f'  key_file: "{pair.key}"', "  timeout: 2"]
    if verify_with is not None:  # mutual TLS: the server asks for a client certificate
        lines += [f'  ca_file: "{verify_with.cert}"', "  verify: true"]
    lines += [f"  {line}" for line in extra]
    return "tls {\n" + "\n".join(lines) + "\n}"


@pytest.fixture(scope="module")
def servers(certs: Certs) -> Iterator[dict[str, EmbeddedServer]]:
    """One TLS-only server per certificate under test, and a plaintext one, for the module."""
    configs = {
        "tls": tls_block(certs.server),
        "mtls": tls_block(certs.server, verify_with=certs.ca),
        "untrusted": tls_block(certs.untrusted_server),
        "expired": tls_block(certs.expired_server),
        "wrong-host": tls_block(certs.wrong_host_server),
        "plain": "",
    }
    started: dict[str, EmbeddedServer] = {}
    try:
        for name, config in configs.items():
            started[name] = EmbeddedServer(server_name=f"aclbus-{name}", extra_config=config)
            started[name].start()
        yield started
    finally:
        for server in started.values():
            server.stop()


def use(
    monkeypatch: pytest.MonkeyPatch,
    server: EmbeddedServer,
    *,
    handshake_first: bool = False,
    **tls: Pair | None,
) -> None:
    """Point the bus at ``server``, with ``ACLBUS_TLS__*`` for the given CA and certificate."""
    monkeypatch.setenv("ACLBUS_NATS__SERVERS", server.url)
    monkeypatch.setenv("ACLBUS_NATS__CONNECT_TIMEOUT", str(CONNECT_TIMEOUT))
    # A refused client certificate can show as a reset before the server's alert is read:
    # quick retries reach the alert well within the bound.
    monkeypatch.setenv("ACLBUS_NATS__RECONNECT_TIME_WAIT", "0.1")
    for name in ("CA_FILE", "CERT_FILE", "KEY_FILE", "HANDSHAKE_FIRST"):
        monkeypatch.delenv(f"ACLBUS_TLS__{name}", raising=False)
        monkeypatch.delenv(f"ACLBUS_NATS__TLS_{name}", raising=False)
    if (ca := tls.get("ca")) is not None:
        monkeypatch.setenv("ACLBUS_TLS__CA_FILE", str(ca.cert))
    if (client := tls.get("client")) is not None:
        monkeypatch.setenv("ACLBUS_TLS__CERT_FILE", str(client.cert))
        monkeypatch.setenv("ACLBUS_TLS__KEY_FILE", str(client.key))
    if handshake_first:
        monkeypatch.setenv("ACLBUS_TLS__HANDSHAKE_FIRST", "true")


def make_bus(*plugins: object) -> Bus:
    """A bus on ``ACLBUS_NATS__SERVERS`` with the TLS plugin (and ``plugins``), as installed."""
    s = Settings(
        backend="nats",
        subject_prefix="tls" + uuid.uuid4().hex[:10],
        streams=StreamLimits(max_bytes=1 << 20, storage="memory"),
    )
    backend = NatsBackend(s, nats=NatsSettings())
    return Bus(s, backend=backend, entry_points=False, plugins=[aclbus_tls, *plugins])


# -- working connections -------------------------------------------------------------------------


async def test_server_tls_checks_the_ca_and_the_host_and_carries_a_message(
    servers: dict[str, EmbeddedServer],
    certs: Certs,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = servers["tls"]
    use(monkeypatch, server, ca=certs.ca)
    caplog.set_level(logging.DEBUG)
    conns = await asyncio.wait_for(round_trip(make_bus(), server, "over TLS"), WAIT * 2)
    assert all(c.get("tls_version", "").startswith("1.") for c in conns), conns
    assert not [c for c in conns if c.get("tls_peer_certs")]  # no client certificate sent
    # asyncio's "returning true from eof_received() has no effect when using ssl", logged as
    # each TLS connection of nats-py closes, is dropped, and only that line of asyncio's.
    assert "eof_received" not in caplog.text
    kept = logging.LogRecord("asyncio", logging.WARNING, __file__, 1, "other", None, None)
    dropped = logging.LogRecord(
        "asyncio", logging.WARNING, __file__, 1, EofOverSSLFilter.MESSAGE, None, None
    )
    [only] = [f for f in logging.getLogger("asyncio").filters if isinstance(f, EofOverSSLFilter)]
    assert (only.filter(kept), only.filter(dropped)) == (True, False)


async def test_mutual_tls_works_with_the_client_certificate(
    servers: dict[str, EmbeddedServer], certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = servers["mtls"]
    use(monkeypatch, server, ca=certs.ca, client=certs.client)
    conns = await asyncio.wait_for(round_trip(make_bus(), server, "over TLS"), WAIT * 2)
    assert all(c.get("tls_version", "").startswith("1.") for c in conns), conns
    # Each connection's peer chain starts with the client's own certificate.
    leaves = {(c.get("tls_peer_certs") or [{}])[0].get("subject") for c in conns}
    assert leaves == {"CN=agent-alice"}, conns


# -- refused certificates ------------------------------------------------------------------------


FAILURES: dict[str, tuple[str, dict[str, str], Callable[[Certs, EmbeddedServer], str]]] = {
    # case: (server, the client's TLS settings, the problem TLSError names)
    "untrusted CA": (
        "untrusted",
        {"ca": "ca"},
        lambda c, s: (
            f"the server's certificate is not signed by the CA in ACLBUS_TLS__CA_FILE ({c.ca.cert})"
        ),
    ),
    "wrong hostname": (
        "wrong-host",
        {"ca": "ca"},
        lambda c, s: (
            "hostname mismatch: the server's certificate is not for 127.0.0.1, the host in the "
            "server URL; connect with a name the certificate holds, or give the server a "
            "certificate for this one"
        ),
    ),
    "expired server certificate": (
        "expired",
        {"ca": "ca"},
        lambda c, s: "the server's certificate has expired",
    ),
    "mutual TLS without a client certificate": (
        "mtls",
        {"ca": "ca"},
        lambda c, s: (
            "the server requires a client certificate (mutual TLS) and none is set: set "
            "ACLBUS_TLS__CERT_FILE and ACLBUS_TLS__KEY_FILE"
        ),
    ),
    "client certificate of a CA the server does not trust": (
        "mtls",
        {"ca": "ca", "client": "untrusted_client"},
        lambda c, s: (
            "the server refused the client certificate of ACLBUS_TLS__CERT_FILE "
            f"({c.untrusted_client.cert}): it is not signed by a CA the server trusts (its "
            "ca_file) (tlsv1 alert unknown ca)"
        ),
    ),
    "client certificate not valid yet": (
        "mtls",
        {"ca": "ca", "client": "future_client"},
        lambda c, s: (
            "the server refused the client certificate of ACLBUS_TLS__CERT_FILE "
            f"({c.future_client.cert}): it has expired, or is not valid yet (sslv3 alert "
            "certificate expired)"
        ),
    ),
    "TLS client to a plaintext server": (
        "plain",
        {"ca": "ca"},
        lambda c, s: (
            f"the server at 127.0.0.1:{s.port} does not speak TLS (its INFO has no "
            "tls_required), and TLS is configured (ACLBUS_TLS__CA_FILE): nothing was sent to "
            "it. Give the server a tls {} block, or connect without TLS (unset "
            "ACLBUS_TLS__CA_FILE and the other TLS settings, nats:// URL)"
        ),
    ),
    "plaintext client to a TLS-only server": (
        "tls",
        {},
        lambda c, s: (
            "the server's certificate is not signed by a CA this system trusts, and "
            "ACLBUS_TLS__CA_FILE is not set (the server requires TLS, or the URL is "
            "tls://): set it to the CA that signed the server's certificate"
        ),
    ),
}


@pytest.mark.parametrize("case", list(FAILURES))
async def test_a_refused_certificate_is_a_tls_error_at_connect(
    case: str,
    servers: dict[str, EmbeddedServer],
    certs: Certs,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server_name, client, problem = FAILURES[case]
    server = servers[server_name]
    use(monkeypatch, server, **{k: getattr(certs, v) for k, v in client.items()})
    caplog.set_level(logging.DEBUG)
    bus = make_bus()

    started = time.monotonic()
    with pytest.raises(TLSError) as caught:
        await asyncio.wait_for(bus.start(), BOUND * 2)
    took = time.monotonic() - started

    assert took < BOUND, f"gave up after {took:.2f} s"
    assert isinstance(caught.value, BackendClosed)  # what a failed connect raised before
    assert str(caught.value) == (
        f"cannot connect to NATS at {server.url}: TLS failed: {problem(certs, server)}"
    )
    assert caught.value.problem == problem(certs, server)
    assert not bus.started
    assert server.running
    # No key in the error nor in anything logged, not even one line of one.
    shown = f"{caught.value!s} {caught.value!r} {caught.value.__cause__!r} {caplog.text}"
    for pem in certs.all_pem():
        body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
        assert body
        assert not [line for line in body if line in shown]
