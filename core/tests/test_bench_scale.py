"""``aclbus bench scale`` on the memory backend: small steps, real agents, sane figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from aclbus.bench import BenchError
from aclbus.bench.scale import ScaleOptions, render_scale, run_scale
from aclbus.cli import main
from aclbus.settings import Settings, StreamLimits
from aclbus.subscriptions import consumers_per_agent

SMALL = ScaleOptions(agents=(10, 50), processes=(1,), messages=200, timeout=60)


pytestmark = pytest.mark.usefixtures("clean_memory_env")


async def test_each_step_starts_every_agent_and_every_agent_gets_its_messages() -> None:
    settings = Settings(backend="memory")
    steps, env = await run_scale(SMALL, settings=settings)
    assert env["backend"] == "memory"
    assert [(s.agents, s.processes) for s in steps] == [(10, 0), (50, 0)]
    per_agent = {t.value: n for t, n in consumers_per_agent(settings).items()}
    for step in steps:
        f = step.figures()
        assert step.started == step.agents
        # the inbox sends, and the multicast once to each member
        assert step.received == SMALL.messages + step.agents
        assert step.reached == step.agents
        # one consumer each on the inbox and broadcast streams, one on the group stream
        assert step.consumers == {
            kind: step.agents * (n + (kind == "group")) for kind, n in per_agent.items()
        }
        assert step.consumers == {k: step.agents * n for k, n in step.expected_consumers.items()}
        assert f["consumers_per_agent"] == 3
        assert f["start_ms_per_agent"] > 0
        assert f["msg_s"] > 0
        assert f["stop_ms_per_agent"] > 0
        assert (step.heartbeat_outages, step.failed_deregisters) == (0, 0)
        assert set(step.phases_ms_per_agent) == {"start", "join", "register"}
        assert all(ms > 0 for ms in step.phases_ms_per_agent.values())


async def test_a_step_over_the_consumer_limit_fails_with_its_reason_and_the_run_goes_on() -> None:
    settings = Settings(backend="memory", streams=StreamLimits(max_consumers=25))
    options = ScaleOptions(agents=(50, 10), messages=20, timeout=60)
    over, under = (await run_scale(options, settings=settings))[0]
    assert over.error is not None
    assert "ConsumerLimitReached" in over.error
    assert over.figures()["msg_s"] == 0
    assert "failed: ConsumerLimitReached" in render_scale([over, under])
    assert under.error is None
    assert under.reached == 10


async def test_the_memory_backend_refuses_several_processes() -> None:
    with pytest.raises(BenchError, match="one process"):
        await run_scale(ScaleOptions(agents=(10,), processes=(1, 2)), settings=Settings())


def test_the_command_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    args = ["bench", "scale", "--agents", "10,20", "--messages", "30", "--json", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "| 20 | in-process |" in result.output
    report = json.loads(out.read_text())
    assert report["environment"]["backend"] == "memory"
    assert [s["agents"] for s in report["steps"]] == [10, 20]
    assert [s["received"] for s in report["steps"]] == [40, 50]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--agents", "10,x"], "comma-separated"),
        (["--agents", "0"], "at least 1"),
        (["--processes", ""], "at least 1"),
    ],
)
def test_the_command_refuses_bad_counts(args: list[str], problem: str) -> None:
    result = CliRunner().invoke(main, ["bench", "scale", *args])
    assert result.exit_code == 2
    assert problem in result.output


def test_scale_runs_on_its_own() -> None:
    result = CliRunner().invoke(main, ["bench", "scale", "core-throughput"])
    assert result.exit_code == 2
    assert "on its own" in result.output
