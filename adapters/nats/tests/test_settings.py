from __future__ import annotations

import os
from pathlib import Path

import pytest

from aclbus import ConfigurationError
from aclbus_nats.settings import NatsSettings


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("ACLBUS_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_environment_dotenv_and_toml_section(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "aclbus.toml").write_text(
        'backend = "nats"\n[nats]\nname = "from-toml"\nping_interval = 2\n'
    )
    (tmp_path / ".env").write_text("ACLBUS_NATS__CONNECT_TIMEOUT=3\n")
    monkeypatch.setenv("ACLBUS_NATS__SERVERS", "nats://127.0.0.1:1, nats://127.0.0.1:2")
    s = NatsSettings()
    assert s.servers == ["nats://127.0.0.1:1", "nats://127.0.0.1:2"]
    assert (s.name, s.ping_interval, s.connect_timeout) == ("from-toml", 2, 3)


def test_defaults_notice_a_hung_server_quickly() -> None:
    s = NatsSettings()
    assert s.servers == []  # embedded server
    assert s.ping_interval * s.max_outstanding_pings <= 10


def test_bad_url_is_named_without_its_password() -> None:
    with pytest.raises(ConfigurationError) as err:
        NatsSettings(servers=["http://user:hunter2@example.invalid:4222"])
    assert "needs a nats://" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_password_and_url_credentials_are_masked() -> None:
    s = NatsSettings(servers=["nats://user:hunter2@127.0.0.1:4222"], user="u", password="s3cret")
    assert "hunter2" not in repr(s)
    assert "s3cret" not in repr(s)
    assert s.masked_servers() == ["nats://***@127.0.0.1:4222"]
