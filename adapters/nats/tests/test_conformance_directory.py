"""Shared state, the directory and presence on a real nats-server (JetStream KV)."""

from __future__ import annotations

from aclbus.testing.cases.directory import DirectoryTestcase, PresenceTestcase
from aclbus.testing.cases.shared_state import SharedMapTestcase
from aclbus_nats.testing import NatsConfig


class TestSharedMap(NatsConfig, SharedMapTestcase):
    pass


# Real time on a shared machine: an agent counts as gone after 3 missed beats, so the beat must
# be long enough that a busy event loop (the whole suite runs in one process) never misses 3.
class TestDirectory(NatsConfig, DirectoryTestcase):
    heartbeat = 1.0


class TestPresence(NatsConfig, PresenceTestcase):
    heartbeat = 0.5
