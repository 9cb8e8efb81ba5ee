"""Statistics of repeated runs: min/median/max of a figure, percentiles of latencies."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["LatencySummary", "Spread", "percentile"]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, by the nearest-rank method.

    Raises:
        ValueError: ``values`` is empty or ``q`` is outside 0-100.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within 0..100, got {q!r}")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Spread:
    """Min, median and max of a figure over repetitions."""

    min: float
    median: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """The spread of ``values`` (at least one)."""
        return cls(min(values), statistics.median(values), max(values))


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Latencies in milliseconds: mean and percentiles."""

    mean: float
    p50: float
    p95: float
    p99: float
    count: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> LatencySummary:
        """Summarize latencies given in seconds (at least one)."""
        ms = [s * 1000 for s in seconds]
        return cls(
            mean=statistics.fmean(ms),
            p50=percentile(ms, 50),
            p95=percentile(ms, 95),
            p99=percentile(ms, 99),
            count=len(ms),
        )
