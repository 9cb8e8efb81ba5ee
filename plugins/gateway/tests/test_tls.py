"""``aclbus serve`` over HTTPS with client certificates (mutual TLS), as a real process."""

from __future__ import annotations

import datetime
import os
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LISTENING = re.compile(r"listening on (https://127\.0\.0\.1:\d+)")


@dataclass
class Pki:
    ca: Path
    server: tuple[Path, Path]
    client: tuple[Path, Path]
    stranger: tuple[Path, Path]  # a client of another CA


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _issue(
    subject: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    server: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(subject) if issuer is None else issuer[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        import ipaddress

        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(san, critical=False)
    signer = key if issuer is None else issuer[1]
    return builder.sign(signer, hashes.SHA256()), key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = _issue("gateway test CA", None)
    other_ca = _issue("another CA", None)
    ca_path, _ = _write(directory, "ca", *ca)
    return Pki(
        ca=ca_path,
        server=_write(directory, "server", *_issue("127.0.0.1", ca, server=True)),
        client=_write(directory, "client", *_issue("alice", ca)),
        stranger=_write(directory, "stranger", *_issue("mallory", other_ca)),
    )


@pytest.fixture(scope="module")
def https_url(pki: Pki) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACLBUS_")}
    env.update(
        ACLBUS_BACKEND="memory",
        ACLBUS_GATEWAY__TLS_CERTFILE=str(pki.server[0]),
        ACLBUS_GATEWAY__TLS_KEYFILE=str(pki.server[1]),
        ACLBUS_GATEWAY__TLS_CLIENT_CA=str(pki.ca),
    )
    aclbus = Path(sys.executable).with_name("aclbus")
    process = subprocess.Popen(
        [str(aclbus), "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = None
        for _ in range(50):  # the first lines: the listening one comes within a few
            line = process.stdout.readline()
            if not line:
                break
            found = LISTENING.search(line)
            if found:
                url = found.group(1)
                break
        assert url is not None, "aclbus serve did not listen on https"
        yield url
    finally:
        process.terminate()
        assert process.wait(20) == 0


def _context(pki: Pki, client: tuple[Path, Path] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if client is not None:
        context.load_cert_chain(str(client[0]), str(client[1]))
    return context


def test_a_client_of_the_ca_is_served(https_url: str, pki: Pki) -> None:
    with httpx.Client(verify=_context(pki, pki.client)) as client:
        response = client.get(f"{https_url}/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "live"}


@pytest.mark.parametrize("who", ["nobody", "stranger"])
def test_no_certificate_or_another_ca_s_is_turned_away(https_url: str, pki: Pki, who: str) -> None:
    client_cert = None if who == "nobody" else pki.stranger
    with (
        httpx.Client(verify=_context(pki, client_cert)) as client,
        pytest.raises(httpx.TransportError),
    ):
        client.get(f"{https_url}/health/live")
