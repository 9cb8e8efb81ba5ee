"""The core's tests run on the in-memory backend, with no installed plugin, unless a test says
otherwise.

The default backend is ``nats`` (with an embedded server); the core's own tests are about the
core, so they do not start servers, and they do not pick up the plugins installed in the
workspace (retry, dedup, ordering: each tests itself). The NATS adapter's tests run the same
code on real servers.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _memory_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACLBUS_BACKEND", "memory")
    monkeypatch.setenv("ACLBUS_PLUGINS", "")  # an empty allow-list: no entry point plugins


@pytest.fixture
def clean_memory_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ``ACLBUS_*`` variable of the caller's, the memory backend, an empty working folder.

    For tests of commands that read their settings as a user's process would (no
    ``aclbus.toml`` or ``.env`` nearby, every installed plugin loaded).
    """
    for key in list(os.environ):
        if key.startswith("ACLBUS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("ACLBUS_BACKEND", "memory")
    monkeypatch.chdir(tmp_path)
