"""`BusCollector`: what the bus and its backend know, read at scrape time, not counted twice.

`aclbus.BusStats` already counts handler failures, dead letters, undecodable, expired and
unhandled deliveries on the bus' own path (some of them before any middleware runs); the
collector exports those counters as they are when Prometheus scrapes, with the backend's
connection state and reconnections, and the consumer states of the last poll
(`BusCollector.poll`), so that nothing is added to the hot path for them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aclbus.specs import ConsumerState

__all__ = ["CONSUMER_METRICS", "STATS_METRICS", "BusCollector"]

STATS_METRICS: dict[str, tuple[str, str]] = {
    "dead_lettered": (
        "aclbus_messages_dead_lettered",
        "Messages this bus put in the dead-letter queue.",
    ),
    "failed": ("aclbus_handler_failures", "Deliveries whose handler (or middleware) raised."),
    "unhandled": ("aclbus_messages_unhandled", "Deliveries no handler matched."),
    "decode_errors": (
        "aclbus_messages_undecodable",
        "Deliveries that were not valid ACL messages.",
    ),
    "expired": ("aclbus_messages_expired", "Deliveries dropped because their TTL had run out."),
}
"""`BusStats` field: (metric name without ``_total``, help)."""

CONSUMER_METRICS: dict[str, tuple[str, str]] = {
    "pending": (
        "aclbus_consumer_pending",
        "Messages stored for this bus' consumers and not delivered yet (the backlog).",
    ),
    "ack_pending": (
        "aclbus_consumer_ack_pending",
        "Deliveries to this bus' consumers not acked or terminated yet.",
    ),
    "redelivered": (
        "aclbus_consumer_redelivered",
        "Unacked deliveries to this bus' consumers that were delivered more than once.",
    ),
}
"""`ConsumerState` field: (gauge name, help), summed by stream (and consumer, by setting)."""


class BusCollector(Collector):
    """Exports a bus' `BusStats` counters, its backend's connection and its consumer states.

    Args:
        bus: The bus (its ``stats`` and ``backend`` are read at each scrape).
        by_consumer: Label the consumer gauges by consumer (usually an agent id) too.
    """

    def __init__(self, bus: Any, *, by_consumer: bool = False) -> None:
        self._bus = bus
        self._by_consumer = by_consumer
        self._consumers: Sequence[ConsumerState] = ()

    async def poll(self) -> None:
        """Read the backend's consumer states now; the next scrapes export them."""
        self._consumers = await self._bus.backend.consumer_states()

    def collect(self) -> Iterator[Metric]:
        """The counters and gauges as they are now (the consumer states of the last poll)."""
        backend = self._bus.backend
        name = str(backend.name)
        stats = self._bus.stats
        for field, (metric, help_text) in STATS_METRICS.items():
            family = CounterMetricFamily(metric, help_text, labels=["backend"])
            family.add_metric([name], float(getattr(stats, field)))
            yield family
        reconnects = CounterMetricFamily(
            "aclbus_reconnects",
            "Times the backend's connection came back after it was lost.",
            labels=["backend"],
        )
        reconnects.add_metric([name], float(backend.reconnects))
        yield reconnects
        # A backend with a connection says whether it holds one (NATS); one without (the
        # memory engine) is connected while the bus runs.
        connected = getattr(backend, "connected", None)
        up = bool(connected) if connected is not None else bool(self._bus.started)
        gauge = GaugeMetricFamily(
            "aclbus_connected",
            "1 while the bus' backend is connected to its broker, else 0.",
            labels=["backend"],
        )
        gauge.add_metric([name], 1.0 if up else 0.0)
        yield gauge
        yield from self._consumer_gauges(name)

    def _consumer_gauges(self, backend: str) -> Iterator[Metric]:
        labels = ["backend", "stream", "consumer"] if self._by_consumer else ["backend", "stream"]
        states = self._consumers
        for field, (metric, help_text) in CONSUMER_METRICS.items():
            sums: dict[tuple[str, ...], float] = {}
            for state in states:
                key: tuple[str, ...] = (
                    (backend, state.stream, state.consumer)
                    if self._by_consumer
                    else (backend, state.stream)
                )
                sums[key] = sums.get(key, 0.0) + getattr(state, field)
            family = GaugeMetricFamily(metric, help_text, labels=labels)
            for key, total in sums.items():
                family.add_metric(list(key), total)
            yield family
