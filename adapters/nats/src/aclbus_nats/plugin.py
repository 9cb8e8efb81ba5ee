"""The adapter's plugin: the ``nats`` backend, its bench columns and ``aclbus cluster``."""

from __future__ import annotations

from aclbus.plugin import hookimpl
from aclbus.plugin.spec import BackendRegister, BenchmarkRegister, CommandRegister

# Imported for its side effect, cheaply (pydantic only): the settings class is then known as
# the reader of aclbus.toml's [nats] table, whose keys are checked even while another backend
# runs.
from aclbus_nats import settings as _settings  # noqa: F401

__all__ = ["aclbus_register_backends", "aclbus_register_benchmarks", "aclbus_register_commands"]


@hookimpl
def aclbus_register_backends(register: BackendRegister) -> None:
    """Register `NatsBackend` as ``nats``."""
    from aclbus_nats.backend import NatsBackend  # FastStream loads only when NATS is used

    register("nats", NatsBackend)


@hookimpl
def aclbus_register_benchmarks(register: BenchmarkRegister) -> None:
    """Register the ``raw``, ``raw-headers`` (nats-py) and ``faststream`` bench columns."""
    from aclbus_nats.bench import FastStreamColumn, RawNatsColumn

    register("raw", RawNatsColumn.for_bus)
    register("raw-headers", RawNatsColumn.with_headers_for_bus)
    register("faststream", FastStreamColumn.for_bus)


@hookimpl
def aclbus_register_commands(register: CommandRegister) -> None:
    """Register ``aclbus cluster`` (``up``: a local cluster; ``demo``: the demo on one)."""
    from aclbus_nats.cluster_command import cluster

    register(cluster)
