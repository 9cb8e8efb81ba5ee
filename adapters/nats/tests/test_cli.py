"""The command line on the default backend: nats, with the embedded server (real processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ACLBUS_")}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "aclbus.cli", *args],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_demo_runs_on_the_embedded_server_and_keeps_its_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = _run(["demo", "--agents", "2", "--messages", "5"], tmp_path, ACLBUS_DATA_DIR=str(data))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "aclbus demo on nats" in done.stdout
    for pattern in ("broadcast", "request-reply", "p2p work (pool)", "retry"):
        assert pattern in done.stdout
    assert "pool work split between workers: worker-1:" in done.stdout
    # the embedded server kept its JetStream store under the data dir
    assert any((data / "nats").rglob("ACLBUS_AGENT")), sorted(data.rglob("*"))[:20]


def test_doctor_reports_server_and_jetstream_with_secrets_masked(tmp_path: Path) -> None:
    done = _run(["doctor"], tmp_path, ACLBUS_CREDENTIALS="very-secret-value")
    assert done.returncode == 0, done.stdout + done.stderr
    facts = json.loads(done.stdout)
    assert facts["backend"] == "nats"
    server = facts["server"]
    major, minor = (int(x) for x in server["server_version"].split(".")[:2])
    assert (major, minor) >= (2, 11)
    assert server["embedded"] is True
    assert server["jetstream"]["streams"] >= 4
    assert "very-secret-value" not in done.stdout + done.stderr
