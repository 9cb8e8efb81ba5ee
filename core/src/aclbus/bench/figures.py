"""The scenarios the harness knows, and the figures they produce.

A scenario (what a user names on the command line) is one or more figures; each figure is one
step run by every column, several times, with the median reported and compared.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aclbus.bench.errors import UnknownScenario
from aclbus.bench.stats import LatencySummary, Spread
from aclbus.plugin.bench_columns import (
    CORE_THROUGHPUT,
    DURABLE_THROUGHPUT,
    LATENCY_AT_RATE,
    REQUEST_LATENCY,
    REQUEST_THROUGHPUT,
    Params,
    Sample,
)

__all__ = ["COLUMNS", "SCENARIOS", "Figure", "plan", "resolve"]

SCENARIOS = ("core-throughput", "durable-throughput", "request-reply", "latency-at-rate")
"""The scenarios, in the order they run."""

COLUMNS = ("raw", "raw-headers", "faststream", "aclbus", "memory")
"""The columns, in the order tables show them: the limit (without and with aclbus' headers),
the peer, aclbus, aclbus on memory."""

_LATENCY_STEPS = (REQUEST_LATENCY, LATENCY_AT_RATE)


def resolve(names: Iterable[str]) -> tuple[str, ...]:
    """The scenarios to run, in their canonical order; none given: all of them.

    Raises:
        UnknownScenario: A name that is not a scenario; the error lists the known ones.
    """
    wanted = list(names)
    for name in wanted:
        if name not in SCENARIOS:
            raise UnknownScenario(name, SCENARIOS)
    return tuple(s for s in SCENARIOS if not wanted or s in wanted)


@dataclass(slots=True)
class Figure:
    """One measured quantity of a scenario, for every column, over repetitions.

    Attributes:
        scenario: The scenario it belongs to.
        metric: What is measured (``throughput``, ``latency at 5000 msg/s``).
        step: The column step that measures it.
        params: The step's parameters.
        unit: ``msg/s``, ``req/s`` or ``ms``.
        target: Minimum ratio to each baseline column that the issue asks for.
        runs: Per column, the figure of each repetition.
        latencies: Per column, the latency summary of each repetition (latency figures).
        samples: Per column, every latency in seconds over all repetitions (for the plot).
    """

    scenario: str
    metric: str
    step: str
    params: Params
    unit: str
    target: dict[str, float] = field(default_factory=dict)
    runs: dict[str, list[float]] = field(default_factory=dict)
    latencies: dict[str, list[LatencySummary]] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)

    @property
    def is_latency(self) -> bool:
        """True for latencies (lower is better), False for throughputs."""
        return self.step in _LATENCY_STEPS

    def record(self, column: str, sample: Sample) -> float:
        """Add one repetition's sample of ``column``; returns its figure."""
        if self.is_latency:
            summary = LatencySummary.of(sample.latencies or [sample.elapsed])
            self.latencies.setdefault(column, []).append(summary)
            self.samples.setdefault(column, []).extend(sample.latencies)
            value = summary.mean
        else:
            value = sample.rate
        self.runs.setdefault(column, []).append(value)
        return value

    def spread(self, column: str) -> Spread | None:
        """Min/median/max of ``column`` over the repetitions; None if it did not run."""
        values = self.runs.get(column)
        return Spread.of(values) if values else None

    def median(self, column: str) -> float | None:
        """The median figure of ``column``; None if it did not run."""
        spread = self.spread(column)
        return spread.median if spread else None

    def ratio(self, baseline: str, column: str = "aclbus") -> float | None:
        """How ``column`` compares with ``baseline``, as a speed: above 1 is faster.

        A throughput ratio is ``column / baseline``; a latency ratio is ``baseline / column``
        (half the latency counts as twice the speed), so targets read the same way for both.
        """
        ours, theirs = self.median(column), self.median(baseline)
        if ours is None or theirs is None or ours <= 0 or theirs <= 0:
            return None
        return theirs / ours if self.is_latency else ours / theirs

    def met(self) -> bool | None:
        """Whether every target is met; None if the figure has no target or no baseline."""
        checks = [
            ratio >= want
            for baseline, want in self.target.items()
            if (ratio := self.ratio(baseline)) is not None
        ]
        return all(checks) if checks else None

    def latency(self, column: str) -> dict[str, float] | None:
        """Median over repetitions of each latency statistic of ``column``, in ms."""
        summaries = self.latencies.get(column)
        if not summaries:
            return None
        return {
            stat: Spread.of([getattr(s, stat) for s in summaries]).median
            for stat in ("mean", "p50", "p95", "p99")
        }

    def as_dict(self) -> dict[str, Any]:
        """The figure as JSON: medians, ratios, spreads, latency percentiles, targets."""
        out: dict[str, Any] = {
            "scenario": self.scenario,
            "metric": self.metric,
            "unit": self.unit,
            "better": "lower" if self.is_latency else "higher",
        }
        for column in COLUMNS:
            out[column] = self.median(column)
        out["ratio_raw"] = self.ratio("raw")
        out["ratio_raw_headers"] = self.ratio("raw-headers")
        out["ratio_faststream"] = self.ratio("faststream")
        out["ratio_memory"] = self.ratio("aclbus", "memory")
        out["target"] = dict(self.target)
        out["target_met"] = self.met()
        out["runs"] = {c: list(v) for c, v in self.runs.items()}
        out["spread"] = {
            c: {"min": s.min, "median": s.median, "max": s.max}
            for c in self.runs
            if (s := self.spread(c)) is not None
        }
        if self.is_latency:
            out["latency_ms"] = {c: self.latency(c) for c in self.latencies}
        out["params"] = {
            "messages": self.params.messages,
            "size": self.params.size,
            "in_flight": self.params.in_flight,
            "rate": self.params.rate if self.step == LATENCY_AT_RATE else None,
            "duration": self.params.duration if self.step == LATENCY_AT_RATE else None,
        }
        return out


def plan(
    scenarios: Sequence[str],
    params: Params,
    *,
    rates: Sequence[float],
    latency_messages: int,
) -> list[Figure]:
    """The figures the given scenarios measure, empty and in order.

    Args:
        scenarios: Resolved scenario names.
        params: The common step parameters.
        rates: The rates of ``latency-at-rate``, one figure each.
        latency_messages: Requests in the sequential request-latency step.
    """
    figures: list[Figure] = []
    for scenario in scenarios:
        if scenario == "core-throughput":
            figures.append(
                Figure(
                    scenario,
                    "throughput",
                    CORE_THROUGHPUT,
                    params,
                    "msg/s",
                    {"raw": 0.5, "faststream": 5.0},
                )
            )
        elif scenario == "durable-throughput":
            figures.append(
                Figure(scenario, "throughput", DURABLE_THROUGHPUT, params, "msg/s", {"raw": 0.7})
            )
        elif scenario == "request-reply":
            sequential = Params(
                messages=latency_messages,
                size=params.size,
                in_flight=1,
                timeout=params.timeout,
            )
            figures.append(
                Figure(
                    scenario, "latency, sequential", REQUEST_LATENCY, sequential, "ms", {"raw": 0.8}
                )
            )
            figures.append(
                Figure(
                    scenario,
                    f"throughput, {params.in_flight} in flight",
                    REQUEST_THROUGHPUT,
                    params,
                    "req/s",
                    {"raw": 0.8},
                )
            )
        elif scenario == "latency-at-rate":
            for rate in rates:
                paced = Params(
                    messages=params.messages,
                    size=params.size,
                    in_flight=params.in_flight,
                    rate=rate,
                    duration=params.duration,
                    timeout=params.timeout,
                )
                figures.append(
                    Figure(scenario, f"latency at {rate:g} msg/s", LATENCY_AT_RATE, paced, "ms")
                )
    return figures
