"""Fixtures of the NATS adapter's tests: certificates for TLS and mutual TLS.

Made with ``cryptography`` at the start of the session into a temporary directory (nothing is
committed): EC P-256 keys, which take milliseconds to make.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aclbus.acl import ACLMessage
from aclbus.bus import Bus
from aclbus.testing.collector import Collector
from aclbus_nats.server import EmbeddedServer, monitor

_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Pair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Certs:
    """Every certificate the TLS tests use.

    Attributes:
        ca: The CA the clients trust (``ACLBUS_TLS__CA_FILE``).
        server: Signed by ``ca``, for 127.0.0.1 and localhost.
        client: Signed by ``ca``, for mutual TLS (``CN=agent-alice``).
        other_ca: A CA nobody trusts.
        untrusted_server: Signed by ``other_ca``, for 127.0.0.1 and localhost.
        expired_server: Signed by ``ca``, for 127.0.0.1 and localhost, expired yesterday.
        wrong_host_server: Signed by ``ca``, for wrong.example only.
        untrusted_client: A client certificate signed by ``other_ca``.
        future_client: A client certificate signed by ``ca``, valid from tomorrow on.
        email_client: A client certificate signed by ``ca`` with the SAN email
            ``bob@agents.test`` (what ``verify_and_map`` maps it to).
        stranger_client: A client certificate signed by ``ca`` for ``CN=agent-stranger``, a
            user no server knows.
        rotated_server: Signed by ``ca`` with a new key, CN ``aclbus rotated server``.
        new_ca: A second CA, for rotating to a new CA.
        new_ca_server: Signed by ``new_ca``, CN ``aclbus new-CA server``.
        bundle: ``ca`` and ``new_ca`` in one file (its ``key`` is ``new_ca``'s key).
    """

    ca: Pair
    server: Pair
    client: Pair
    other_ca: Pair
    untrusted_server: Pair
    expired_server: Pair
    wrong_host_server: Pair
    untrusted_client: Pair
    future_client: Pair
    email_client: Pair
    stranger_client: Pair
    rotated_server: Pair
    new_ca: Pair
    new_ca_server: Pair
    bundle: Pair

    def all_pem(self) -> list[str]:
        """The text of every key file: none of it may show in an error or a log line."""
        pairs = [getattr(self, name) for name in self.__dataclass_fields__]
        return [p.key.read_text() for p in pairs]


class _Issuer:
    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + 30 * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self,
        common_name: str,
        *,
        hosts: list[str] | None = None,
        client: bool = False,
        expired: bool = False,
        not_yet_valid: bool = False,
        emails: list[str] | None = None,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        start, end = (now - 3 * _DAY, now - _DAY) if expired else (now - _DAY, now + 30 * _DAY)
        if not_yet_valid:
            start, end = now + _DAY, now + 30 * _DAY
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if hosts or emails:
            names: list[x509.GeneralName] = [x509.RFC822Name(e) for e in emails or []]
            for host in hosts or []:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key


def _write(
    directory: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Pair:
    pair = Pair(directory / f"{name}.pem", directory / f"{name}-key.pem")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.touch(mode=0o600)
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pair


def make_certs(directory: Path) -> Certs:
    """Make every certificate of `Certs` in ``directory``."""
    local = ["127.0.0.1", "localhost"]
    ca, other = _Issuer("aclbus test CA"), _Issuer("aclbus untrusted CA")
    new = _Issuer("aclbus new CA")
    new_ca = _write(directory, "new-ca", new.cert, new.key)
    bundle = Pair(directory / "ca-bundle.pem", new_ca.key)
    bundle.cert.write_bytes(
        ca.cert.public_bytes(serialization.Encoding.PEM) + new_ca.cert.read_bytes()
    )
    return Certs(
        ca=_write(directory, "ca", ca.cert, ca.key),
        server=_write(directory, "server", *ca.issue("aclbus test server", hosts=local)),
        client=_write(directory, "client", *ca.issue("agent-alice", client=True)),
        other_ca=_write(directory, "other-ca", other.cert, other.key),
        untrusted_server=_write(
            directory, "untrusted-server", *other.issue("aclbus test server", hosts=local)
        ),
        expired_server=_write(
            directory, "expired-server", *ca.issue("aclbus test server", hosts=local, expired=True)
        ),
        wrong_host_server=_write(
            directory, "wrong-host-server", *ca.issue("wrong.example", hosts=["wrong.example"])
        ),
        untrusted_client=_write(
            directory, "untrusted-client", *other.issue("agent-mallory", client=True)
        ),
        future_client=_write(
            directory, "future-client", *ca.issue("agent-early", client=True, not_yet_valid=True)
        ),
        email_client=_write(
            directory,
            "email-client",
            *ca.issue("agent-bob", client=True, emails=["bob@agents.test"]),
        ),
        stranger_client=_write(
            directory, "stranger-client", *ca.issue("agent-stranger", client=True)
        ),
        rotated_server=_write(
            directory, "rotated-server", *ca.issue("aclbus rotated server", hosts=local)
        ),
        new_ca=new_ca,
        new_ca_server=_write(
            directory, "new-ca-server", *new.issue("aclbus new-CA server", hosts=local)
        ),
        bundle=bundle,
    )


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """The TLS tests' certificates, made once per session in a temporary directory."""
    return make_certs(tmp_path_factory.mktemp("certs"))


async def round_trip(bus: Bus, server: EmbeddedServer, payload: str) -> list[dict[str, Any]]:
    """alice sends bob one message (``payload``) on ``bus``; bob's handler gets it.

    Returns:
        The server's client connections meanwhile, as its monitoring reports them
        (``/connz?auth=true``: with their TLS and authorisation details).
    """
    got: Collector[ACLMessage] = Collector()

    async def take(msg: ACLMessage) -> None:
        got.add(msg)

    bus.agent("bob").on()(take)
    async with bus:
        await bus.send(
            ACLMessage(performative="inform", sender_id="alice", receiver_id="bob", payload=payload)
        )
        [msg] = await got.wait_for(1, timeout=5.0)
        connz = await asyncio.to_thread(monitor.get_json, server.monitor_port, "/connz?auth=true")
    assert (msg.sender_id, msg.payload) == ("alice", payload)
    conns: list[dict[str, Any]] = connz.get("connections") or []
    assert conns, "the server reports no client connection"
    return conns
