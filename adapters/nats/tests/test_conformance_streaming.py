"""The streaming testcases on a real nats-server."""

from __future__ import annotations

from aclbus.testing.cases.streaming import StreamFaultsTestcase, StreamingTestcase
from aclbus_nats.testing import NatsConfig


class TestStreaming(NatsConfig, StreamingTestcase):
    pass


class TestStreamFaults(NatsConfig, StreamFaultsTestcase):
    pass
