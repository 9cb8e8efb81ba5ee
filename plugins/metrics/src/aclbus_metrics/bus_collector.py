"""`BusCollector`: what the bus counts itself, read at scrape time rather than counted twice.

`aclbus.BusStats` already counts handler failures, dead letters, undecodable, expired and
unhandled deliveries on the bus' own path (some of them before any middleware runs); the
collector exports those counters as they are when Prometheus scrapes, and the backend's
connection state, so that nothing is added to the hot path for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["STATS_METRICS", "BusCollector"]

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


class BusCollector(Collector):
    """Exports a bus' `BusStats` counters and its backend's connection state.

    Args:
        bus: The bus (its ``stats`` and ``backend`` are read at each scrape).
    """

    def __init__(self, bus: Any) -> None:
        self._bus = bus

    def collect(self) -> Iterator[Metric]:
        """The counters and gauges as they are now."""
        backend = self._bus.backend
        name = str(backend.name)
        stats = self._bus.stats
        for field, (metric, help_text) in STATS_METRICS.items():
            family = CounterMetricFamily(metric, help_text, labels=["backend"])
            family.add_metric([name], float(getattr(stats, field)))
            yield family
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
