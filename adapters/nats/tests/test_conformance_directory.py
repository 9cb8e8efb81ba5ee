"""Shared state, the directory and presence on a real nats-server (JetStream KV)."""

from __future__ import annotations

from aclbus.testing.cases.directory import DirectoryTestcase, PresenceTestcase
from aclbus.testing.cases.shared_state import SharedMapTestcase
from aclbus_nats.testing import NatsConfig


class TestSharedMap(NatsConfig, SharedMapTestcase):
    pass


class TestDirectory(NatsConfig, DirectoryTestcase):
    pass


class TestPresence(NatsConfig, PresenceTestcase):
    pass
