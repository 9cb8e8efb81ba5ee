"""Every test reads its tracing settings from what it sets itself, never from the machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("ACLBUS_TRACING__", "OTEL_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no aclbus.toml or .env of the working directory
