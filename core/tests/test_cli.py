from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from aclbus.cli import main


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("ACLBUS_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _memory(monkeypatch: pytest.MonkeyPatch, _isolated: None) -> None:
    monkeypatch.setenv("ACLBUS_BACKEND", "memory")


def test_plugins_lists_the_default_plugins() -> None:
    result = CliRunner().invoke(main, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    plugins = {p["name"]: p for p in json.loads(result.output)}
    assert plugins["memory"]["distribution"] == "aclbus"
    assert plugins["memory"]["hooks"] == ["aclbus_register_backends"]


def test_doctor_shows_settings_with_secrets_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACLBUS_CREDENTIALS", "s3cr3t-value")
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.output)
    assert facts["backend"] == "memory"
    assert "ack" in facts["capabilities"]
    assert "s3cr3t" not in result.output


def test_doctor_reports_the_consumer_headroom(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per stream: consumers used and allowed; in agents: how many more can start."""
    monkeypatch.setenv("ACLBUS_STREAMS__MAX_CONSUMERS", "50")
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 0, result.output
    consumers = json.loads(result.output)["consumers"]
    assert consumers["streams"]["ACLBUS_AGENT"] == {
        "used": 0,
        "max": 50,
        "free": 50,
        "per_agent": 1,
        "agents": 50,
    }
    assert consumers["agents_headroom"] == 50
    assert consumers["setting"] == "ACLBUS_STREAMS__MAX_CONSUMERS"


def test_unknown_backend_is_a_clean_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACLBUS_BACKEND", "kafka")
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 1
    assert "Unknown backend 'kafka'" in result.output
    assert "Traceback" not in result.output


def test_demo_runs_and_reports_every_pattern() -> None:
    result = CliRunner().invoke(main, ["demo", "--agents", "2", "--messages", "5"])
    assert result.exit_code == 0, result.output
    for pattern in (
        "broadcast",
        "request-reply",
        "p2p work",
        "retry",
        "scatter-gather",
        "contract-net",
    ):
        assert pattern in result.output
