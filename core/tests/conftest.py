"""The core's tests run on the in-memory backend, with no installed plugin, unless a test says
otherwise.

The default backend is ``nats`` (with an embedded server); the core's own tests are about the
core, so they do not start servers, and they do not pick up the plugins installed in the
workspace (retry, dedup, ordering: each tests itself). The NATS adapter's tests run the same
code on real servers.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _memory_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACLBUS_BACKEND", "memory")
    monkeypatch.setenv("ACLBUS_PLUGINS", "")  # an empty allow-list: no entry point plugins
