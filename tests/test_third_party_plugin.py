"""examples/plugin (aclbus-audit), installed the way a user installs a plugin, then found by aclbus.

It is built and installed from its own pyproject.toml into a fresh directory (not the
workspace's venv, so that no other test sees it); processes started with that directory on
their path must find it through its entry point, read its ``[audit]`` table, and pass the
plugin's own tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "plugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    uv = Path(sys.executable).parent / "uv"
    done = subprocess.run(
        [str(uv), "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(PLUGIN)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "UV_PYTHON": sys.executable},
    )
    assert done.returncode == 0, done.stderr
    return target


def _run(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACLBUS_")}
    env["PYTHONPATH"] = str(site)
    env["ACLBUS_BACKEND"] = "memory"
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_aclbus_lists_the_installed_plugin(site: Path, tmp_path: Path) -> None:
    code = "from aclbus.cli import main; main()"
    done = _run(site, "-c", code, "plugins", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [audit] = [p for p in json.loads(done.stdout) if p["name"] == "audit"]
    assert (audit["module"], audit["distribution"], audit["version"]) == (
        "aclbus_audit",
        "aclbus-audit",
        "0.1.0",
    )
    assert audit["hooks"] == ["aclbus_middlewares"]


def test_its_table_is_checked_once_it_is_installed(site: Path, tmp_path: Path) -> None:
    # A typo: when the bus is made, since the plugin's settings class is known by then.
    (tmp_path / "aclbus.toml").write_text('[audit]\nlevle = "info"\n')
    done = _run(site, "-c", "from aclbus import Bus; Bus()", cwd=tmp_path)
    assert done.returncode != 0
    assert "unknown key 'levle' in [audit] (did you mean 'level'?)" in done.stderr
    # A bad value: when the plugin reads its settings, as the bus starts.
    (tmp_path / "aclbus.toml").write_text('[audit]\nlevel = "loud"\n')
    start = "import asyncio; from aclbus import Bus; asyncio.run(Bus().start())"
    done = _run(site, "-c", start, cwd=tmp_path)
    assert done.returncode != 0
    assert "ConfigurationError: invalid [audit] settings:" in done.stderr
    assert "level (ACLBUS_AUDIT__LEVEL, or [audit] level in aclbus.toml)" in done.stderr


def test_the_example_runs_with_the_installed_plugin(site: Path, tmp_path: Path) -> None:
    done = _run(site, str(ROOT / "examples" / "third_party_plugin.py"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "worker answered 42" in done.stdout
    assert "aclbus.audit WARNING audit: worker got request" in done.stderr


def test_the_plugins_own_tests_pass(site: Path, tmp_path: Path) -> None:
    done = _run(
        site, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PLUGIN / "tests"), cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
