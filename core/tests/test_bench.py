"""``aclbus bench`` on the memory backend: every scenario, tiny counts, real runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from aclbus.bench import (
    SCENARIOS,
    BenchError,
    BenchOptions,
    UnknownScenario,
    run_bench,
    to_json,
)
from aclbus.bench.stats import LatencySummary, percentile
from aclbus.cli import main
from aclbus.settings import Settings

TINY = BenchOptions(messages=40, repeats=2, rates=(400.0,), duration=0.1, timeout=20)


pytestmark = pytest.mark.usefixtures("clean_memory_env")


async def test_every_scenario_gives_positive_figures_for_the_memory_column() -> None:
    figures, env = await run_bench(TINY, settings=Settings(backend="memory"))
    rows = to_json(figures, env)
    assert [r["scenario"] for r in rows] == [
        "core-throughput",
        "durable-throughput",
        "request-reply",
        "request-reply",
        "latency-at-rate",
    ]
    for row in rows:
        assert row["memory"] > 0
        assert len(row["runs"]["memory"]) == 2
        spread = row["spread"]["memory"]
        assert spread["min"] <= row["memory"] <= spread["max"]
        # no NATS here: the baselines did not run, so there is nothing to compare with
        assert row["raw"] is None
        assert row["ratio_raw"] is None
        assert row["environment"]["backend"] == "memory"
    latency = rows[2]["latency_ms"]["memory"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    assert rows[4]["params"]["rate"] == 400.0


def test_cli_writes_json_table_and_png(tmp_path: Path) -> None:
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    result = CliRunner().invoke(
        main,
        [
            "bench",
            "request-reply",
            "latency-at-rate",
            "--messages",
            "30",
            "--repeats",
            "1",
            "--rate",
            "300",
            "--duration",
            "0.1",
            "--json",
            str(out),
            "--plot",
            str(png),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "aclbus bench" in result.output
    assert "latency at 300 msg/s" in result.output
    rows = json.loads(out.read_text())
    assert {r["scenario"] for r in rows} == {"request-reply", "latency-at-rate"}
    for row in rows:
        for key in ("scenario", "unit", "raw", "faststream", "aclbus", "ratio_raw"):
            assert key in row
        assert "ratio_faststream" in row
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_columns_picks_the_columns_that_run(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", "core-throughput", "--messages", "30", "--repeats", "1", "--json", str(out)]
    result = CliRunner().invoke(main, [*args, "--columns", " memory, raw"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(out.read_text())
    assert row["memory"] > 0
    assert set(row["runs"]) == {"memory"}  # raw runs only on NATS


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bench", "warp-speed"], "Unknown scenario 'warp-speed'. Known scenarios: core-"),
        (["bench", "--messages", "-5"], "Invalid value for '--messages'"),
        (["bench", "--size", "4"], "Invalid value for '--size'"),
        (["bench", "--rate", "0"], "Invalid value for '--rate'"),
        (["bench", "--repeats", "0"], "Invalid value for '--repeats'"),
        (["bench", "--columns", "raw,warp"], "unknown column(s) ['warp']; columns: raw, raw-"),
    ],
)
def test_bad_arguments_are_clear_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_options_name_what_is_wrong() -> None:
    with pytest.raises(UnknownScenario) as info:
        BenchOptions(scenarios=["nope"]).checked()
    assert info.value.known == SCENARIOS
    with pytest.raises(BenchError, match="messages must be at least 1, got -1"):
        BenchOptions(messages=-1).checked()
    with pytest.raises(BenchError, match="rates must be positive"):
        BenchOptions(rates=(-3.0,)).checked()
    with pytest.raises(BenchError, match="duration must be positive"):
        BenchOptions(duration=0).checked()


def test_scenarios_run_in_canonical_order_whatever_the_order_asked() -> None:
    options = BenchOptions(scenarios=["latency-at-rate", "core-throughput"]).checked()
    assert options.scenarios == ("core-throughput", "latency-at-rate")


def test_percentiles_and_latency_summary() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    summary = LatencySummary.of([0.001, 0.002, 0.003])
    assert summary.mean == pytest.approx(2.0)
    assert summary.p50 == pytest.approx(2.0)
    assert summary.count == 3
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
