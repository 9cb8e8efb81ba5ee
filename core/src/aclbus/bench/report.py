"""What a run shows: the table on the terminal and the JSON file."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from aclbus.bench.figures import COLUMNS, Figure

__all__ = ["render_table", "to_json", "write_json"]


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.3g}" if value < 10 else f"{value:,.0f}"
    return f"{value:,.0f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}x"


def render_table(
    figures: Sequence[Figure], environment: Mapping[str, str], console: Console | None = None
) -> Table:
    """Print (and return) the table: medians with min-max, both ratios, targets.

    Args:
        figures: The measured figures.
        environment: Versions and machine facts, shown in the caption.
        console: Where to print; None: standard output.
    """
    present = [c for c in COLUMNS if any(c in f.runs for f in figures)]
    table = Table(
        title="aclbus bench (median of runs; min-max below)",
        caption=", ".join(f"{k} {v}" for k, v in environment.items()),
    )
    # A narrow terminal folds a cell onto the next line rather than cut it ("…"): every
    # figure stays readable in full.
    table.add_column("scenario", overflow="fold")
    table.add_column("unit", overflow="fold")
    for column in present:
        table.add_column(column, justify="right", overflow="fold")
    table.add_column("xraw", justify="right", overflow="fold")
    with_headers = "raw-headers" in present
    if with_headers:
        table.add_column("xraw-headers", justify="right", overflow="fold")
    table.add_column("xfaststream", justify="right", overflow="fold")
    table.add_column("target", justify="left", overflow="fold")
    for f in figures:
        cells = []
        for column in present:
            spread = f.spread(column)
            if spread is None:
                cells.append("-")
                continue
            cells.append(
                f"{_number(spread.median, f.unit)}\n"
                f"[dim]{_number(spread.min, f.unit)}-{_number(spread.max, f.unit)}[/dim]"
            )
        target = " ".join(f"≥{want:g}x{base}" for base, want in f.target.items())
        met = f.met()
        if met is not None:
            target += " [green]met[/green]" if met else " [red]not met[/red]"
        table.add_row(
            f"{f.scenario}\n[dim]{f.metric}[/dim]",
            f.unit,
            *cells,
            _ratio(f.ratio("raw")),
            *([_ratio(f.ratio("raw-headers"))] if with_headers else []),
            _ratio(f.ratio("faststream")),
            target or "-",
        )
    out = console or Console()
    out.print(table)
    latency = [f for f in figures if f.is_latency and f.latencies]
    if latency:
        detail = Table(title="latency, ms (median of runs)")
        for name in ("scenario", "column", "mean", "p50", "p95", "p99"):
            detail.add_column(name, justify="left" if name in ("scenario", "column") else "right")
        for f in latency:
            for column in present:
                stats = f.latency(column)
                if stats is not None:
                    detail.add_row(
                        f"{f.scenario}: {f.metric}",
                        column,
                        *(f"{stats[k]:.3g}" for k in ("mean", "p50", "p95", "p99")),
                    )
        out.print(detail)
    return table


def to_json(figures: Sequence[Figure], environment: Mapping[str, str]) -> list[dict[str, Any]]:
    """The figures as a JSON-ready list, one object per scenario figure.

    Each object has ``scenario``, ``metric``, ``unit``, ``better``, the median of each column
    (``raw``, ``faststream``, ``aclbus``, ``memory``; null where it did not run), ``ratio_raw``
    and ``ratio_faststream`` (aclbus' speed relative to them: above 1 is faster), the targets,
    every run, min/median/max, latency percentiles, the parameters and the environment.
    """
    return [{**f.as_dict(), "environment": dict(environment)} for f in figures]


def write_json(path: Path, figures: Sequence[Figure], environment: Mapping[str, str]) -> None:
    """Write `to_json` to ``path``."""
    path.write_text(json.dumps(to_json(figures, environment), indent=2) + "\n")
