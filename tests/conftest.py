"""Fixtures of the cross-package tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ``ACLBUS_*`` variable set, and an empty working directory (no aclbus.toml, no .env)."""
    for key in list(os.environ):
        if key.startswith("ACLBUS_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path
