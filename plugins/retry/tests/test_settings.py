"""RetrySettings from the environment and aclbus.toml; what the plugin asks of the backend."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import pytest

import aclbus_retry
from aclbus import Bus, Capabilities, CapabilityError, ConfigurationError, Settings
from aclbus.backends.memory import MemoryBackend
from aclbus_retry import RetryPlugin, RetrySettings


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ACLBUS_RETRY__* variable, .env or aclbus.toml from outside the test."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("ACLBUS_RETRY__")]:
        monkeypatch.delenv(name)


def test_defaults() -> None:
    policy = RetrySettings().policy()
    assert (policy.max_attempts, policy.initial_interval, policy.multiplier) == (5, 1.0, 2.0)
    assert (policy.max_interval, policy.jitter, policy.progress_interval) == (60.0, 0.2, None)
    assert (policy.retry_on, policy.give_up_on) == ((Exception,), ())


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACLBUS_RETRY__MAX_ATTEMPTS", "7")
    monkeypatch.setenv("ACLBUS_RETRY__INITIAL_INTERVAL", "0.25")
    monkeypatch.setenv("ACLBUS_RETRY__GIVE_UP_ON", "ValueError,json.JSONDecodeError")
    monkeypatch.setenv("ACLBUS_RETRY__PROGRESS_INTERVAL", "auto")
    monkeypatch.setenv(
        "ACLBUS_RETRY__AGENTS",
        json.dumps({"worker": {"max_attempts": 3, "retry_on": ["TimeoutError"]}}),
    )
    settings = RetrySettings()
    default = settings.policy()
    assert (default.max_attempts, default.initial_interval) == (7, 0.25)
    assert default.give_up_on == (ValueError, json.JSONDecodeError)
    assert default.progress_interval == "auto"
    worker = settings.policy("worker")
    assert (worker.max_attempts, worker.initial_interval) == (3, 0.25)
    assert worker.retry_on == (TimeoutError,)
    assert settings.policy("someone-else") == default


def test_toml(tmp_path: Path) -> None:
    (tmp_path / "aclbus.toml").write_text(
        """
[retry]
max_attempts = 6
give_up_on = ["KeyError"]

[retry.agents.worker]
max_attempts = 3
progress_interval = 5

[retry.agents.quiet]
progress_interval = "off"
"""
    )
    settings = RetrySettings(progress_interval=2.0)
    assert settings.policy().max_attempts == 6
    assert settings.policy().give_up_on == (KeyError,)
    worker = settings.policy("worker")
    assert (worker.max_attempts, worker.progress_interval, worker.give_up_on) == (
        3,
        5.0,
        (KeyError,),
    )
    assert settings.policy("quiet").progress_interval is None


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"retry_on": ["nosuchmodule.Error"]}, "names no exception class"),
        ({"give_up_on": ["json.dumps"]}, "not an exception class"),
        ({"give_up_on": ["NoSuchBuiltin"]}, "names no exception class"),
        ({"max_attempts": 0}, "greater than or equal to 1"),
        ({"jitter": 2}, "less than or equal to 1"),
        ({"progress_interval": 0}, "progress_interval must be above 0"),
        ({"agents": {"worker": {"max_attemps": 3}}}, "max_attemps"),
        ({"agents": {"bad id!": {"max_attempts": 3}}}, "agent id in retry.agents"),
    ],
)
def test_bad_settings_are_refused(values: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        RetrySettings(**values)  # type: ignore[arg-type]


def test_dotted_and_colon_names_resolve() -> None:
    settings = RetrySettings(retry_on=["asyncio:TimeoutError", "concurrent.futures.TimeoutError"])
    assert settings.policy().retry_on == (asyncio.TimeoutError, concurrent.futures.TimeoutError)


# -- what the plugin needs from the backend ----------------------------------------------


class _NoDelayBackend(MemoryBackend):
    capabilities: ClassVar[Capabilities] = replace(MemoryBackend.capabilities, nack_delay=False)


class _NoProgressBackend(MemoryBackend):
    capabilities: ClassVar[Capabilities] = replace(MemoryBackend.capabilities, in_progress=False)


def test_required_capabilities() -> None:
    plain = aclbus_retry.required_capabilities(RetrySettings())
    assert plain == Capabilities(ack=True, nack_delay=True, term=True)
    beating = aclbus_retry.required_capabilities(
        RetrySettings(agents={"worker": {"progress_interval": "auto"}})
    )
    assert beating.in_progress


def test_a_backend_without_delayed_nacks_fails_at_start_up() -> None:
    with pytest.raises(CapabilityError, match="nack_delay"):
        Bus(
            Settings(backend="memory"),
            plugins=[aclbus_retry],
            backend=_NoDelayBackend(),
            entry_points=False,
        )


def test_heartbeats_need_in_progress_only_when_configured() -> None:
    Bus(
        Settings(backend="memory"),
        plugins=[RetryPlugin(RetrySettings())],
        backend=_NoProgressBackend(),
        entry_points=False,
    )
    with pytest.raises(CapabilityError, match="in_progress"):
        Bus(
            Settings(backend="memory"),
            plugins=[RetryPlugin(RetrySettings(progress_interval=5.0))],
            backend=_NoProgressBackend(),
            entry_points=False,
        )


async def test_a_heartbeat_not_below_ack_wait_fails_at_start_up() -> None:
    bus = Bus(
        Settings(backend="memory", ack_wait=3.0),
        plugins=[RetryPlugin(RetrySettings(agents={"worker": {"progress_interval": 3.0}}))],
        entry_points=False,
    )
    with pytest.raises(ConfigurationError, match=r"agent 'worker'.*not below ack_wait"):
        await bus.start()
    assert not bus.started


async def test_more_attempts_than_max_deliver_is_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = Bus(
        Settings(backend="memory", max_deliver=3),
        plugins=[RetryPlugin(RetrySettings(max_attempts=8))],
        entry_points=False,
    )
    async with bus:
        pass
    assert "allows 8 attempts but the broker delivers a message at most max_deliver=3" in (
        caplog.text
    )
