"""The in-memory engine: JetStream semantics, core pub/sub, KV and fault injection, no server.

`MemoryBackend` implements the whole `aclbus.backend.Backend` contract and declares every
capability. It runs on an injectable `Clock`: with a `ManualClock`, ack timeouts, nack delays,
TTLs and request timeouts pass when a test says so, instantly and deterministically. `Faults`
makes it misbehave on purpose (duplicates, reordering, lost acks, delays, redelivery storms),
reproducibly for a given seed.

It is registered as the backend ``memory`` through the plugin hook below, exactly like an
external adapter.
"""

from __future__ import annotations

from collections.abc import Callable

from aclbus.backend import BackendFactory
from aclbus.backends.memory.backend import MemoryBackend
from aclbus.backends.memory.clock import Clock, ManualClock, SystemClock, Timer
from aclbus.backends.memory.consumer import ConsumerInfo
from aclbus.backends.memory.faults import FaultInjector, Faults
from aclbus.backends.memory.server import MemoryServer
from aclbus.backends.memory.stream import StreamInfo
from aclbus.backends.memory.subscription import MemorySubscription
from aclbus.plugin import hookimpl

__all__ = [
    "Clock",
    "ConsumerInfo",
    "FaultInjector",
    "Faults",
    "ManualClock",
    "MemoryBackend",
    "MemoryServer",
    "MemorySubscription",
    "StreamInfo",
    "SystemClock",
    "Timer",
]


@hookimpl
def aclbus_register_backends(register: Callable[[str, BackendFactory], None]) -> None:
    """Register `MemoryBackend` as the backend ``memory``."""
    register("memory", MemoryBackend)
