"""The settings of the metrics plugin: ``ACLBUS_METRICS__*`` and the ``[metrics]`` table."""

from __future__ import annotations

from pydantic import Field

from aclbus.settings import SectionSettings, section_config

__all__ = ["DEFAULT_BUCKETS", "MetricsSettings"]

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Histogram buckets in seconds: from half a millisecond (a local hop) to ten seconds."""


class MetricsSettings(SectionSettings):
    """What the metrics plugin does, read from ``ACLBUS_METRICS__*``, ``.env`` and ``aclbus.toml``.

    Attributes:
        enabled: Count and time messages. Off by default: an installed plugin that is not
            enabled adds no middleware and costs nothing.
        port: Serve ``/metrics`` over HTTP on this port when the bus starts; None: no server
            (the gateway, or your own server, serves `aclbus_metrics.exposition`). 0 picks a
            free port (`aclbus_metrics.server_address` tells which).
        host: The address the server listens on; loopback unless you mean to expose it.
        global_registry: Register in ``prometheus_client``'s default registry (beside your
            process' own metrics) instead of one registry per bus. Two such buses in one
            process collide.
        agent_label: Add an ``agent`` label (the receiving agent's id) to the delivery
            metrics. Off by default: with per-agent inboxes it grows with the agents.
        buckets: The histograms' bucket bounds in seconds.
        poll_interval: Seconds between two polls of the backend's consumer states (backlog,
            unacked deliveries, redeliveries: one CONSUMER.INFO per consumer on NATS). A
            scrape reads the last poll, so it never waits for the broker.
    """

    model_config = section_config("metrics")

    enabled: bool = False
    port: int | None = Field(default=None, ge=0, le=65535)
    host: str = "127.0.0.1"
    global_registry: bool = False
    agent_label: bool = False
    buckets: tuple[float, ...] = Field(default=DEFAULT_BUCKETS, min_length=1)
    poll_interval: float = Field(default=15.0, gt=0)
