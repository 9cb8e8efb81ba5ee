"""``make bench-instructions``: its workload delivers every message; its counter gives figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "benchmarks" / "instructions"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACLBUS_")}
    env["ACLBUS_PLUGINS"] = "json,memory"
    return {**env, **extra}


@pytest.mark.parametrize("mode", ["core", "durable", "request"])
def test_the_workload_delivers_every_message(mode: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "workload.py"),
            mode,
            *("--messages", "60", "--warmup", "5"),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["arrived"] == 60
    assert report["phases"] == (["round-trip"] if mode == "request" else ["publish", "consume"])
    # The publish figure counts the sender alone only while no delivery runs as it publishes.
    assert report["interleaved"] == 0, "deliveries ran during the publish phase"


def test_the_counter_gives_plausible_figures_and_compares_them(tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"figures": {"publish": 1_000_000, "core": 2_000_000}}))
    out = tmp_path / "now.json"
    done = subprocess.run(
        [
            *(sys.executable, str(SCRIPTS / "run.py"), "--modes", "core"),
            *("--messages", "100", "--warmup", "10", "--json", str(out), "--against", str(old)),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())["figures"]
    assert set(figures) == {"publish", "consume", "core"}
    for path, value in figures.items():
        # Today about 120k each way; a figure outside this is a broken count, not a change.
        assert 1_000 < value < 10_000_000, (path, value)
    assert abs(figures["publish"] + figures["consume"] - figures["core"]) <= 1
    assert (
        f"| publish | 1,000,000 | {figures['publish']:,} | {figures['publish'] / 1e6:.3f} | "
        in done.stdout
    )


def test_the_counter_names_what_to_install_without_valgrind(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "run.py")],
        capture_output=True,
        text=True,
        env=_env(PATH=str(tmp_path)),
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    assert "apt-get install valgrind" in done.stderr
