"""aclbus-metrics: Prometheus metrics of a bus (SPEC R15, R11).

Installed, the plugin (entry point ``metrics``) does nothing until enabled
(``ACLBUS_METRICS__ENABLED=true`` or ``enabled = true`` in ``[metrics]``): then each bus gets
its own registry, fed by the outermost `MetricsMiddleware` (messages sent, received,
settled by outcome, retried; latency and handler duration; requests by outcome) and read at
scrape time from the bus' own counters (`BusCollector`: dead letters, failures, connection
state). Labels are bounded: ``performative``, ``message_type``, ``outcome``, ``backend``.

Expose it with `exposition` (the gateway's ``/metrics`` does), or set
``ACLBUS_METRICS__PORT`` for the plugin's own HTTP server on loopback:

Example:
    ```python
    import aclbus_metrics

    async with Bus() as bus:  # with ACLBUS_METRICS__ENABLED=true
        text = aclbus_metrics.exposition(aclbus_metrics.registry(bus))
    ```
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry

from aclbus.errors import ConfigurationError
from aclbus.plugin import hookimpl
from aclbus_metrics.bus_collector import CONSUMER_METRICS, STATS_METRICS, BusCollector
from aclbus_metrics.instruments import Instruments
from aclbus_metrics.middleware import MetricsMiddleware
from aclbus_metrics.server import CONTENT_TYPE, MetricsServer, exposition
from aclbus_metrics.settings import DEFAULT_BUCKETS, MetricsSettings

if TYPE_CHECKING:
    from aclbus import Bus
    from aclbus.middleware import MiddlewareFactory
    from aclbus.settings import Settings

__all__ = [
    "CONSUMER_METRICS",
    "CONTENT_TYPE",
    "DEFAULT_BUCKETS",
    "STATS_METRICS",
    "BusCollector",
    "Instruments",
    "MetricsMiddleware",
    "MetricsServer",
    "MetricsSettings",
    "aclbus_bus_started",
    "aclbus_bus_stopping",
    "aclbus_middlewares",
    "exposition",
    "middleware_for",
    "poll",
    "registry",
    "server_address",
]


def middleware_for(bus: Bus, settings: MetricsSettings) -> MetricsMiddleware:
    """Make the metrics middleware of ``bus``, with its registry, under ``settings``.

    Raises:
        ConfigurationError: ``global_registry`` is set and another bus in this process
            registered there already.
    """
    registry = REGISTRY if settings.global_registry else CollectorRegistry(auto_describe=True)
    try:
        instruments = Instruments(
            backend=bus.backend.name, buckets=settings.buckets, agent_label=settings.agent_label
        )
        registry.register(instruments)
        collector = BusCollector(bus, by_consumer=settings.agent_label)
        registry.register(collector)
    except ValueError as exc:  # prometheus_client: "Duplicated timeseries in CollectorRegistry"
        raise ConfigurationError(
            "aclbus-metrics: the global registry already holds a bus' metrics "
            "(ACLBUS_METRICS__GLOBAL_REGISTRY is for one bus per process)"
        ) from exc
    return MetricsMiddleware(
        registry, instruments, shared=settings.global_registry, collector=collector
    )


@hookimpl(tryfirst=True)
def aclbus_middlewares(settings: Settings) -> Sequence[MiddlewareFactory]:
    """The `MetricsMiddleware`, outermost, when the plugin is enabled; nothing otherwise."""
    metrics = MetricsSettings()
    if not metrics.enabled:
        return ()
    return [lambda bus: middleware_for(bus, metrics)]


def _middleware(bus: Bus) -> MetricsMiddleware | None:
    for middleware in bus.middlewares:
        if isinstance(middleware, MetricsMiddleware):
            return middleware
    return None


@hookimpl
def aclbus_bus_started(bus: Bus) -> None:
    """Poll the consumer states every ``poll_interval``; serve ``ACLBUS_METRICS__PORT``, if set."""
    middleware = _middleware(bus)
    if middleware is None:
        return
    metrics = MetricsSettings()
    middleware.start_polling(metrics.poll_interval)
    if metrics.port is not None:
        middleware.server = MetricsServer(middleware.registry, host=metrics.host, port=metrics.port)


@hookimpl
def aclbus_bus_stopping(bus: Bus) -> None:
    """Stop the bus' HTTP server; a global registry forgets the bus' metrics."""
    middleware = _middleware(bus)
    if middleware is None:
        return
    middleware.stop_polling()
    if middleware.server is not None:
        middleware.server.close()
        middleware.server = None
    middleware.release()


async def poll(bus: Bus) -> None:
    """Read ``bus``' consumer states from the backend now, rather than at the next interval.

    Raises:
        ConfigurationError: The plugin is not active on ``bus``.
    """
    registry(bus)  # the error for a bus without the plugin
    middleware = _middleware(bus)
    if middleware is not None:
        await middleware.poll()


def registry(bus: Bus) -> CollectorRegistry:
    """The registry holding ``bus``' metrics (to expose with `exposition`).

    Raises:
        ConfigurationError: The plugin is not active on ``bus`` (not enabled, not loaded, or
            the bus not started).
    """
    middleware = _middleware(bus)
    if middleware is None:
        raise ConfigurationError(
            "the metrics plugin is not active on this bus: start the bus with "
            "ACLBUS_METRICS__ENABLED=true (and the plugin loaded)"
        )
    return middleware.registry


def server_address(bus: Bus) -> tuple[str, int] | None:
    """Where ``bus``' metrics server listens, or None when it runs none."""
    middleware = _middleware(bus)
    if middleware is None or middleware.server is None:
        return None
    return middleware.server.address
