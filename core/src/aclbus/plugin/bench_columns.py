"""What a benchmark column is: one way of moving messages, measured step by step.

A column (raw nats-py, FastStream, aclbus on the configured backend, aclbus on memory) runs
the same steps with the same drivers (`aclbus.bench.drivers`), so the figures differ only in
the code under test. Adapters add columns through the ``aclbus_register_benchmarks`` hook.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CORE_THROUGHPUT",
    "DURABLE_THROUGHPUT",
    "LATENCY_AT_RATE",
    "REQUEST_LATENCY",
    "REQUEST_THROUGHPUT",
    "STAMP_MIN_SIZE",
    "STEPS",
    "Column",
    "ColumnFactory",
    "Params",
    "Sample",
]

CORE_THROUGHPUT = "core-throughput"
"""``at_most_once`` publish → subscribe of ``messages`` messages; a throughput."""
DURABLE_THROUGHPUT = "durable-throughput"
"""``at_least_once`` publish (``in_flight`` awaiting their PubAck) → consume → ack."""
REQUEST_LATENCY = "request-latency"
"""``messages`` requests one after the other; each one's round trip."""
REQUEST_THROUGHPUT = "request-throughput"
"""``messages`` requests with ``in_flight`` of them waiting at once; a throughput."""
LATENCY_AT_RATE = "latency-at-rate"
"""Durable publishes paced at ``rate`` for ``duration`` s; publish-to-handler latency."""
STAMP_MIN_SIZE = 20
"""The smallest payload: a message carries its send time in its first 20 bytes."""
STEPS = (CORE_THROUGHPUT, DURABLE_THROUGHPUT, REQUEST_LATENCY, REQUEST_THROUGHPUT, LATENCY_AT_RATE)
"""Every step a column may be asked to run."""


@dataclass(frozen=True, slots=True)
class Params:
    """What one step is asked to do.

    Attributes:
        messages: Messages (or requests) to move in a counted step.
        size: Payload bytes per message.
        in_flight: Publishes or requests awaiting their answer at once.
        rate: Messages per second, for `LATENCY_AT_RATE`.
        duration: Seconds a paced step publishes for.
        timeout: Seconds a step may take in all before it fails.
    """

    messages: int = 10_000
    size: int = 128
    in_flight: int = 64
    rate: float = 5_000.0
    duration: float = 2.0
    timeout: float = 60.0


@dataclass(slots=True)
class Sample:
    """What one run of one step measured.

    Attributes:
        count: Messages (or replies) that arrived.
        elapsed: Seconds from the first publish to the last arrival.
        latencies: Per-message latencies in seconds (latency steps only).
    """

    count: int
    elapsed: float
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Arrivals per second."""
        return self.count / self.elapsed if self.elapsed > 0 else 0.0


class Column(abc.ABC):
    """One contestant of the benchmark: opened once, then asked to run steps.

    Args:
        name: The column's name in tables and JSON (``raw``, ``faststream``, ``aclbus``).
    """

    def __init__(self, name: str) -> None:
        self.name = name

    async def open(self) -> None:  # noqa: B027 - most columns connect per step
        """Connect what the column keeps for the whole run."""

    async def close(self) -> None:  # noqa: B027
        """Release what `open` made."""

    @abc.abstractmethod
    async def run(self, step: str, params: Params) -> Sample:
        """Run one step (one of `STEPS`) and return what it measured.

        Set-up (connections, streams, consumers) happens here too, but outside the timed
        part: only publish-to-arrival is measured.

        Args:
            step: The step's name.
            params: Its parameters.

        Raises:
            BenchTimeout: Not every message arrived within ``params.timeout``.
        """


ColumnFactory = Callable[[Any], Column | None]
"""Makes a column against the bench's started `aclbus.Bus`, or None where it does not apply
(a NATS column when the bus runs on memory). The bus tells where the server is. (Typed
``Any``: this module is below the bus, which cannot be named here without an import cycle.)"""
