"""`MetricsSettings` from the environment and from the ``[metrics]`` table of aclbus.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from aclbus.errors import ConfigurationError
from aclbus_metrics import DEFAULT_BUCKETS, MetricsSettings


def test_off_and_on_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACLBUS_METRICS__ENABLED")
    settings = MetricsSettings()
    assert (settings.enabled, settings.port, settings.host) == (False, None, "127.0.0.1")
    assert settings.buckets == DEFAULT_BUCKETS


def test_the_table_of_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACLBUS_METRICS__ENABLED")
    (tmp_path / "aclbus.toml").write_text(
        "[metrics]\nenabled = true\nport = 9464\nbuckets = [0.01, 0.1, 1.0]\n"
    )
    settings = MetricsSettings()
    assert (settings.enabled, settings.port, settings.buckets) == (True, 9464, (0.01, 0.1, 1.0))


def test_a_key_nobody_reads_is_named(tmp_path: Path) -> None:
    (tmp_path / "aclbus.toml").write_text("[metrics]\nprot = 9464\n")
    with pytest.raises(ConfigurationError, match="prot"):
        MetricsSettings()


def test_a_port_out_of_range_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACLBUS_METRICS__PORT", "70000")
    with pytest.raises(ConfigurationError, match="ACLBUS_METRICS__PORT"):
        MetricsSettings()
