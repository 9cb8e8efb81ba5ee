"""The TLS plugin: ``ACLBUS_TLS__*`` as connection options, and nothing when nothing is set."""

from __future__ import annotations

from pathlib import Path

import pytest

import aclbus_tls
from aclbus import Bus, Settings
from aclbus.backends.memory import MemoryBackend
from aclbus.connection_options import ConnectionOptions, TLSNames, TLSOptions
from aclbus.errors import ConfigurationError
from aclbus_tls import TLSPlugin, TLSSettings

VARIABLES = ("CA_FILE", "CERT_FILE", "KEY_FILE", "HANDSHAKE_FIRST")


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(f"ACLBUS_TLS__{name}", raising=False)


class Recording(MemoryBackend):
    handed: ConnectionOptions | None = None

    def configure_connection(self, options: ConnectionOptions) -> None:
        self.handed = options


def test_installed_and_not_configured_it_gives_nothing() -> None:
    # As an installed entry point: the bus loads it from the environment.
    backend = Recording()
    bus = Bus(Settings(backend="memory"), backend=backend)
    assert "tls" in {info.name for info in bus.plugins.info()}
    assert backend.handed == ConnectionOptions()


def test_the_environment_gives_the_files_and_handshake_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACLBUS_TLS__CA_FILE", "/etc/aclbus/ca.pem")
    monkeypatch.setenv("ACLBUS_TLS__CERT_FILE", "/etc/aclbus/agent.pem")
    monkeypatch.setenv("ACLBUS_TLS__KEY_FILE", "/etc/aclbus/agent-key.pem")
    monkeypatch.setenv("ACLBUS_TLS__HANDSHAKE_FIRST", "true")
    options = aclbus_tls.aclbus_connection_options(Settings(backend="memory"))
    assert options == ConnectionOptions(
        tls=TLSOptions(
            ca_file=Path("/etc/aclbus/ca.pem"),
            cert_file=Path("/etc/aclbus/agent.pem"),
            key_file=Path("/etc/aclbus/agent-key.pem"),
            handshake_first=True,
        )
    )
    assert options.tls is not None
    assert options.tls.names == TLSNames()  # the messages name ACLBUS_TLS__*


def test_handshake_first_alone_is_tls_with_the_system_cas() -> None:
    options = TLSPlugin(TLSSettings(handshake_first=True)).aclbus_connection_options(Settings())
    assert options == ConnectionOptions(tls=TLSOptions(handshake_first=True))


def test_a_key_without_a_certificate_is_refused_when_the_bus_is_made() -> None:
    plugin = TLSPlugin(TLSSettings(key_file=Path("/etc/aclbus/agent-key.pem")))
    with pytest.raises(ConfigurationError, match="ACLBUS_TLS__KEY_FILE is set without"):
        Bus(Settings(backend="memory"), plugins=[plugin], entry_points=False)
