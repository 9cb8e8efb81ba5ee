"""Where the tests of deploy/ find promtool and the Prometheus server.

They come from Debian's ``prometheus`` package, unpacked by ``make tools`` (which ``make
test`` runs first) into ``.tools/prometheus/``; ``PROMTOOL`` / ``PROMETHEUS`` name other
binaries, and PATH is the last place looked. A missing binary fails the test: the project's
own set-up provides it, so its absence is a broken set-up, not a reason to skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools" / "prometheus" / "usr" / "bin"


def _binary(name: str, variable: str) -> Path:
    given = os.environ.get(variable)
    if given:
        path = Path(given)
        if not path.is_file():
            pytest.fail(f"{variable}={given} is not a file")
        return path
    for candidate in (TOOLS / name, shutil.which(name)):
        if candidate is not None and Path(candidate).is_file():
            return Path(candidate)
    pytest.fail(
        f"{name} not found in {TOOLS}, ${variable} or PATH: run `make tools` "
        f"(`make test` does it first), which unpacks Debian's prometheus package there"
    )


@pytest.fixture(scope="session")
def promtool() -> Path:
    """promtool, from ``make tools``."""
    return _binary("promtool", "PROMTOOL")


@pytest.fixture(scope="session")
def prometheus_binary() -> Path:
    """The Prometheus server, from the same package."""
    return _binary("prometheus", "PROMETHEUS")
