"""``aclbus bench`` on a real nats-server: all four columns, tiny counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aclbus.bench import BenchOptions, run_bench, to_json
from aclbus.plugin.manager import PluginManager
from aclbus.settings import Settings
from aclbus_nats.bench import FastStreamColumn, RawNatsColumn

COLUMNS = ("raw", "raw-headers", "faststream", "aclbus", "memory")


@pytest.fixture
def on_server(monkeypatch: pytest.MonkeyPatch, nats_url: str) -> None:
    for key in list(os.environ):
        if key.startswith("ACLBUS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("ACLBUS_NATS__SERVERS", nats_url)


def test_the_adapter_registers_its_columns() -> None:
    columns = PluginManager(Settings(backend="memory")).benchmark_columns()
    assert columns["raw"] == RawNatsColumn.for_bus
    assert columns["raw-headers"] == RawNatsColumn.with_headers_for_bus
    assert columns["faststream"] == FastStreamColumn.for_bus


async def test_every_scenario_runs_every_column_on_one_server(on_server: None) -> None:
    options = BenchOptions(messages=60, repeats=1, rates=(300.0,), duration=0.2, timeout=20)
    figures, env = await run_bench(options, settings=Settings(backend="nats"))
    rows = to_json(figures, env)
    assert {r["scenario"] for r in rows} == {
        "core-throughput",
        "durable-throughput",
        "request-reply",
        "latency-at-rate",
    }
    assert env["backend"] == "nats"
    assert env["server"].count(".") == 2
    for row in rows:
        for column in COLUMNS:
            assert row[column] > 0, (row["scenario"], row["metric"], column)
        raw, fs, ours = row["raw"], row["faststream"], row["aclbus"]
        if row["better"] == "higher":
            assert row["ratio_raw"] == pytest.approx(ours / raw)
            assert row["ratio_raw_headers"] == pytest.approx(ours / row["raw-headers"])
            assert row["ratio_faststream"] == pytest.approx(ours / fs)
        else:  # latencies: the ratio is a speed, baseline / aclbus
            assert row["unit"] == "ms"
            assert row["ratio_raw"] == pytest.approx(raw / ours)
            assert set(row["latency_ms"]) == set(COLUMNS)


def test_cli_runs_against_the_embedded_server(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ACLBUS_")}
    clean["COLUMNS"] = "200"  # the table's ten columns, each cell on one line
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "aclbus.cli",
            "bench",
            "core-throughput",
            "--messages",
            "50",
            "--repeats",
            "1",
            "--no-memory",
            "--json",
            str(out),
        ],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "core-throughput" in done.stdout
    (row,) = json.loads(out.read_text())
    assert row["raw"] > 0
    assert row["faststream"] > 0
    assert row["aclbus"] > 0
    assert row["memory"] is None
