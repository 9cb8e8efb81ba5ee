"""Where the bench column contract was: it is in `aclbus.plugin.bench_columns` now.

It moved below the bus, so that the ``aclbus_register_benchmarks`` hook can name its types
without an import cycle. This module keeps the old import path; import from
`aclbus.plugin.bench_columns` (or the `aclbus.bench` package).
"""

from __future__ import annotations

from aclbus.plugin.bench_columns import (
    CORE_THROUGHPUT,
    DURABLE_THROUGHPUT,
    LATENCY_AT_RATE,
    REQUEST_LATENCY,
    REQUEST_THROUGHPUT,
    STAMP_MIN_SIZE,
    STEPS,
    Column,
    ColumnFactory,
    Params,
    Sample,
)

__all__ = [
    "CORE_THROUGHPUT",
    "Column",
    "ColumnFactory",
    "DURABLE_THROUGHPUT",
    "LATENCY_AT_RATE",
    "Params",
    "REQUEST_LATENCY",
    "REQUEST_THROUGHPUT",
    "STAMP_MIN_SIZE",
    "STEPS",
    "Sample",
]
