"""``aclbus bench scale`` on a real nats-server: small steps, in one and in two processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aclbus.bench.scale import ScaleOptions, run_scale
from aclbus.settings import Settings
from aclbus.subscriptions import consumers_per_agent


@pytest.fixture
def on_server(monkeypatch: pytest.MonkeyPatch, nats_url: str) -> None:
    # The workers inherit the environment: they reach the same server.
    for key in list(os.environ):
        if key.startswith("ACLBUS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("ACLBUS_NATS__SERVERS", nats_url)
    monkeypatch.setenv("ACLBUS_STREAMS__STORAGE", "memory")
    monkeypatch.setenv("ACLBUS_STREAMS__MAX_BYTES", str(8 << 20))


async def test_agents_in_one_and_two_processes_start_and_get_their_messages(
    on_server: None,
) -> None:
    options = ScaleOptions(agents=(10, 50), processes=(1, 2), messages=200, timeout=120)
    settings = Settings(backend="nats")
    steps, env = await run_scale(options, settings=settings)
    assert env["backend"] == "nats"
    assert env["account_max_consumers"] == -1  # the account sets no limit of its own
    assert [(s.agents, s.processes) for s in steps] == [(10, 1), (50, 1), (10, 2), (50, 2)]
    per_agent = {t.value: n for t, n in consumers_per_agent(settings).items()}
    for step in steps:
        f = step.figures()
        assert step.started == step.agents
        assert step.received == options.messages + step.agents
        assert step.reached == step.agents
        # counted on the server: what consumers_per_agent says, and one for the group
        assert step.consumers == {
            kind: step.agents * (n + (kind == "group")) for kind, n in per_agent.items()
        }
        assert f["consumers_per_agent"] == 3
        assert step.rss_kb > 0
        assert 0 < step.start_s <= step.ready_s
        assert f["msg_s"] > 0
        assert step.stop_s > 0
        assert step.failed_deregisters == 0


def test_the_command_runs_on_the_embedded_server(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ACLBUS_")}
    out = tmp_path / "scale.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "aclbus.cli",
            "bench",
            "scale",
            "--agents",
            "10",
            "--processes",
            "2",
            "--messages",
            "40",
            "--json",
            str(out),
        ],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| 10 | 2 |" in done.stdout
    (step,) = json.loads(out.read_text())["steps"]
    assert (step["started"], step["received"], step["reached"]) == (10, 50, 10)
    assert step["consumers"]["agent"] == 10
