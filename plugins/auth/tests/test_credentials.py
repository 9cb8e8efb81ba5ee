"""The auth plugin's credentials: ``ACLBUS_AUTH__*`` as connection options."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from pydantic import SecretStr

import aclbus_auth
from aclbus import Bus, Settings
from aclbus.backends.memory import MemoryBackend
from aclbus.connection_options import (
    ConnectionOptions,
    CredsFile,
    NKeySeedFile,
    Token,
    UserPassword,
)
from aclbus.errors import ConfigurationError
from aclbus_auth import AuthPlugin, AuthSettings
from aclbus_auth.credentials import credentials

SEED = "SUAM" + "X" * 54  # looks like a user seed; its content must never be shown
TOKEN = "tok-do-not-show"
VARIABLES = ("USER", "PASSWORD", "TOKEN", "NKEY_SEED_FILE", "CREDS_FILE")


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(f"ACLBUS_AUTH__{name}", raising=False)


def secret_file(directory: Path, name: str, mode: int) -> Path:
    path = directory / name
    path.touch(mode=0o600)
    path.write_text(SEED + "\n")
    os.chmod(path, mode)
    return path


class Recording(MemoryBackend):
    handed: ConnectionOptions | None = None

    def configure_connection(self, options: ConnectionOptions) -> None:
        self.handed = options


def test_installed_and_not_configured_it_gives_nothing() -> None:
    backend = Recording()
    bus = Bus(Settings(backend="memory"), backend=backend)
    assert "auth" in {info.name for info in bus.plugins.info()}
    assert backend.handed == ConnectionOptions()


def test_each_way_to_authenticate_names_its_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = secret_file(tmp_path, "agent.nk", 0o600)
    creds = secret_file(tmp_path, "agent.creds", 0o600)
    assert credentials(AuthSettings(user="agent", password=SecretStr("pw"))) == UserPassword(
        "agent", SecretStr("pw"), "ACLBUS_AUTH__USER", "ACLBUS_AUTH__PASSWORD"
    )
    assert credentials(AuthSettings(token=SecretStr(TOKEN))) == Token(
        SecretStr(TOKEN), "ACLBUS_AUTH__TOKEN"
    )
    assert credentials(AuthSettings(nkey_seed_file=seed)) == NKeySeedFile(
        seed, "ACLBUS_AUTH__NKEY_SEED_FILE"
    )
    assert credentials(AuthSettings(creds_file=creds)) == CredsFile(
        creds, "ACLBUS_AUTH__CREDS_FILE"
    )
    monkeypatch.setenv("ACLBUS_AUTH__TOKEN", TOKEN)
    options = aclbus_auth.aclbus_connection_options(Settings(backend="memory"))
    assert options == ConnectionOptions(credentials=Token(SecretStr(TOKEN)))
    assert TOKEN not in repr(options)


def test_two_ways_are_a_configuration_error_naming_them(tmp_path: Path) -> None:
    seed = secret_file(tmp_path, "agent.nk", 0o600)
    with pytest.raises(ConfigurationError) as caught:
        credentials(AuthSettings(user="agent", token=SecretStr(TOKEN), nkey_seed_file=seed))
    assert str(caught.value) == (
        "ACLBUS_AUTH__USER, ACLBUS_AUTH__TOKEN, ACLBUS_AUTH__NKEY_SEED_FILE are all set: "
        "choose one way to authenticate"
    )
    assert TOKEN not in str(caught.value)


def test_a_password_without_a_user_is_refused_when_the_bus_is_made() -> None:
    plugin = AuthPlugin(AuthSettings(password=SecretStr("pw")))
    with pytest.raises(ConfigurationError, match="ACLBUS_AUTH__PASSWORD is set without"):
        Bus(Settings(backend="memory"), plugins=[plugin], entry_points=False)


def test_a_missing_seed_file_is_refused_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.nk"
    with pytest.raises(ConfigurationError) as caught:
        credentials(AuthSettings(nkey_seed_file=missing))
    assert str(caught.value) == (
        f"ACLBUS_AUTH__NKEY_SEED_FILE ({missing}) cannot be read: No such file or directory"
    )


@pytest.mark.parametrize("mode", [0o640, 0o604])
def test_a_seed_or_creds_file_others_may_read_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    caplog.set_level(logging.DEBUG)
    seed = secret_file(tmp_path, "open.nk", mode)
    creds = secret_file(tmp_path, "open.creds", mode)
    for _ in range(2):
        credentials(AuthSettings(nkey_seed_file=seed))
        credentials(AuthSettings(creds_file=creds))
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    shown = "-rw-r-----" if mode == 0o640 else "-rw----r--"
    assert warned == [
        f"ACLBUS_AUTH__NKEY_SEED_FILE ({seed}) may be read by its group or by others (mode "
        f"{shown}): it holds a private key; make it readable by its owner only: chmod 600 {seed}",
        f"ACLBUS_AUTH__CREDS_FILE ({creds}) may be read by its group or by others (mode "
        f"{shown}): it holds a private key; make it readable by its owner only: chmod 600 {creds}",
    ]
    assert SEED not in caplog.text


def test_a_private_file_is_not_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    credentials(AuthSettings(nkey_seed_file=secret_file(tmp_path, "private.nk", 0o600)))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
