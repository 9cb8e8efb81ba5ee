"""The connection-options hook: plugins' TLS and credentials joined and handed to the backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from aclbus import Bus, ConnectionOptions, Settings, hookimpl
from aclbus.backends.memory import MemoryBackend
from aclbus.connection_options import TLSNames, TLSOptions, Token, UserPassword
from aclbus.errors import ConfigurationError, PluginError
from aclbus.plugin.manager import PluginManager

SECRET = "s3cret-token-value"


class Gives:
    """A plugin that contributes ``options`` (or whatever it is given) to the connection."""

    def __init__(self, options: Any) -> None:
        self.options = options

    @hookimpl
    def aclbus_connection_options(self, settings: Settings) -> Any:
        return self.options


class Recording(MemoryBackend):
    """A memory backend that records what the bus hands it."""

    handed: list[ConnectionOptions]

    def configure_connection(self, options: ConnectionOptions) -> None:
        self.handed = [*getattr(self, "handed", []), options]


def manager(*plugins: object) -> PluginManager:
    return PluginManager(Settings(backend="memory"), plugins, entry_points=False)


def test_parts_from_two_plugins_are_joined_naming_where_each_came_from() -> None:
    tls = TLSOptions(ca_file=Path("/etc/ca.pem"))
    token = Token(SecretStr(SECRET))
    joined = manager(
        Gives(ConnectionOptions(tls=tls)), Gives(None), Gives(ConnectionOptions(credentials=token))
    ).connection_options(Settings(backend="memory"))
    assert (joined.tls, joined.credentials) == (tls, token)
    assert joined.sources == {"tls": "Gives#0", "credentials": "Gives#2"}


def test_with_no_plugin_giving_anything_the_options_are_empty() -> None:
    options = manager(Gives(None)).connection_options(Settings(backend="memory"))
    assert options.empty
    assert options == ConnectionOptions()


@pytest.mark.parametrize("part", ["tls", "credentials"])
def test_two_plugins_giving_the_same_part_is_a_plugin_error_naming_both(part: str) -> None:
    value = TLSOptions() if part == "tls" else UserPassword("agent")
    plugins = [Gives(ConnectionOptions(**{part: value})) for _ in range(2)]
    with pytest.raises(PluginError) as caught:
        manager(*plugins).connection_options(Settings(backend="memory"))
    assert str(caught.value) == (
        f"plugins 'Gives#0' and 'Gives#1' both give the connection's {part}: configure one of "
        "them, or disable the other (ACLBUS_DISABLE_PLUGINS)"
    )


def test_a_plugin_returning_something_else_is_a_plugin_error() -> None:
    with pytest.raises(PluginError, match="returned dict from aclbus_connection_options"):
        manager(Gives({"tls": True})).connection_options(Settings(backend="memory"))


def test_the_bus_hands_the_joined_options_to_its_backend_when_it_is_made() -> None:
    settings = Settings(backend="memory")
    token = Token(SecretStr(SECRET))
    backend = Recording()
    Bus(
        settings,
        backend=backend,
        plugins=[Gives(ConnectionOptions(credentials=token))],
        entry_points=False,
    )
    assert [o.credentials for o in backend.handed] == [token]


async def test_the_memory_backend_ignores_them_and_runs() -> None:
    options = ConnectionOptions(credentials=Token(SecretStr(SECRET)), tls=TLSOptions())
    async with Bus(Settings(backend="memory"), plugins=[Gives(options)], entry_points=False):
        pass


def test_secrets_never_show_in_a_repr() -> None:
    options = ConnectionOptions(
        credentials=UserPassword("agent", SecretStr(SECRET)), sources={"credentials": "auth"}
    )
    assert SECRET not in repr(options)
    assert SECRET not in repr(Token(SecretStr(SECRET)))


def test_a_file_that_is_no_certificate_is_a_configuration_error_naming_the_setting(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigurationError) as caught:
        TLSOptions(ca_file=bad).ssl_context()
    assert str(caught.value).startswith(f"ACLBUS_TLS__CA_FILE ({bad}) is not a readable CA bundle")
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nAAAAsecretpart\n-----END PRIVATE KEY-----\n")
    names = TLSNames(cert_file="OLD_CERT", key_file="OLD_KEY")
    with pytest.raises(ConfigurationError) as caught:
        TLSOptions(cert_file=tmp_path / "missing.pem", key_file=key, names=names).ssl_context()
    assert str(caught.value).startswith(
        f"OLD_CERT ({tmp_path / 'missing.pem'}) and OLD_KEY ({key}) are not a readable "
        "certificate and matching key"
    )
    assert "secretpart" not in str(caught.value)


def test_a_key_without_its_certificate_is_refused() -> None:
    with pytest.raises(ConfigurationError) as caught:
        TLSOptions(key_file=Path("/k.pem"))
    assert str(caught.value) == (
        "ACLBUS_TLS__KEY_FILE is set without ACLBUS_TLS__CERT_FILE: a client key needs its "
        "certificate"
    )


def test_a_ready_context_is_used_as_it_is() -> None:
    import ssl

    context = ssl.create_default_context()
    assert TLSOptions(context=context).ssl_context() is context
