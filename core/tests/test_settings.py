from __future__ import annotations

from pathlib import Path

import pytest

from aclbus import ConfigurationError, DeliveryMode, Settings


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("ACLBUS_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    s = Settings()
    assert s.backend == "nats"
    assert s.subject_prefix == "aclbus"
    assert s.broadcast_mode is DeliveryMode.AT_LEAST_ONCE
    assert s.plugins is None
    assert s.disable_plugins == []


def test_environment_with_nesting_and_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACLBUS_BACKEND", "NATS")
    monkeypatch.setenv("ACLBUS_MEMORY__SEED", "7")
    monkeypatch.setenv("ACLBUS_STREAMS__REPLICAS", "3")
    monkeypatch.setenv("ACLBUS_PLUGINS", "retry, dedup")
    monkeypatch.setenv("ACLBUS_DISABLE_PLUGINS", '["metrics"]')
    s = Settings()
    assert s.backend == "nats"
    assert s.memory.seed == 7
    assert s.streams.replicas == 3
    assert s.plugins == ["retry", "dedup"]
    assert s.disable_plugins == ["metrics"]


def test_dotenv_and_toml_with_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "aclbus.toml").write_text(
        'subject_prefix = "fromtoml"\nrequest_timeout = 9.5\n[memory]\nseed = 3\n'
    )
    (tmp_path / ".env").write_text("ACLBUS_SUBJECT_PREFIX=fromdotenv\n")
    s = Settings()
    assert s.subject_prefix == "fromdotenv"  # .env beats aclbus.toml
    assert s.request_timeout == 9.5
    assert s.memory.seed == 3
    monkeypatch.setenv("ACLBUS_SUBJECT_PREFIX", "fromenv")
    assert Settings().subject_prefix == "fromenv"  # the environment beats .env
    assert Settings(subject_prefix="fromarg").subject_prefix == "fromarg"


def test_bad_values_name_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACLBUS_SUBJECT_PREFIX", "a.b")
    with pytest.raises(ConfigurationError, match=r"subject_prefix \(ACLBUS_SUBJECT_PREFIX"):
        Settings()
    monkeypatch.delenv("ACLBUS_SUBJECT_PREFIX")
    monkeypatch.setenv("ACLBUS_REQUEST_TIMEOUT", "-1")
    with pytest.raises(ConfigurationError, match="request_timeout") as err:
        Settings()
    assert isinstance(err.value, ValueError)  # code that caught pydantic's error still works
    monkeypatch.delenv("ACLBUS_REQUEST_TIMEOUT")
    monkeypatch.setenv("ACLBUS_STREAMS__REPLICAS", "9")
    with pytest.raises(ConfigurationError, match=r"ACLBUS_STREAMS__REPLICAS, or \[streams\]"):
        Settings()


def test_secrets_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACLBUS_CREDENTIALS", "hunter2-very-secret")
    s = Settings()
    assert s.credentials is not None
    assert s.credentials.get_secret_value() == "hunter2-very-secret"
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s.masked())
