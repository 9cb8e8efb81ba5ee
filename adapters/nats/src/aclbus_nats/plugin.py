"""The adapter's plugin: registers the ``nats`` backend, as any third-party adapter would."""

from __future__ import annotations

from aclbus.plugin import hookimpl
from aclbus.plugin.spec import BackendRegister

__all__ = ["aclbus_register_backends"]


@hookimpl
def aclbus_register_backends(register: BackendRegister) -> None:
    """Register `NatsBackend` as ``nats``."""
    from aclbus_nats.backend import NatsBackend  # FastStream loads only when NATS is used

    register("nats", NatsBackend)
