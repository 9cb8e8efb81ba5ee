"""The entry point's hook: nothing unless enabled, by environment or by aclbus.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

import aclbus_tracing
from aclbus import Bus
from aclbus.errors import ConfigurationError
from aclbus.settings import Settings
from aclbus_tracing import Tracing, TracingSettings


def test_installed_but_not_enabled_adds_no_middleware() -> None:
    assert aclbus_tracing.aclbus_middlewares(Settings()) == []


def test_enabled_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACLBUS_TRACING__ENABLED", "true")
    [factory] = aclbus_tracing.aclbus_middlewares(Settings())
    bus = Bus(Settings(backend="memory"), entry_points=False)
    middleware = factory(bus)
    assert isinstance(middleware, Tracing)
    assert middleware.system == "memory"


def test_enabled_from_aclbus_toml(tmp_path: Path) -> None:
    (tmp_path / "aclbus.toml").write_text(
        '[tracing]\nenabled = true\ntracer_name = "billing"\npropagate = false\n'
    )
    settings = TracingSettings()
    assert (settings.enabled, settings.tracer_name, settings.propagate) == (True, "billing", False)
    assert len(aclbus_tracing.aclbus_middlewares(Settings())) == 1


def test_a_typo_in_the_table_is_refused(tmp_path: Path) -> None:
    (tmp_path / "aclbus.toml").write_text("[tracing]\nenable = true\n")
    with pytest.raises(ConfigurationError, match="did you mean 'enabled'"):
        TracingSettings()


def test_a_plugin_given_in_code_is_enabled_unless_told_otherwise() -> None:
    assert len(aclbus_tracing.TracingPlugin().aclbus_middlewares(Settings())) == 1
    off = aclbus_tracing.TracingPlugin(settings=TracingSettings(enabled=False))
    assert off.aclbus_middlewares(Settings()) == []
