"""The streaming testcases on the memory engine."""

from __future__ import annotations

from aclbus.testing import MemoryConfig
from aclbus.testing.cases.streaming import StreamFaultsTestcase, StreamingTestcase


class TestStreaming(MemoryConfig, StreamingTestcase):
    pass


class TestStreamFaults(MemoryConfig, StreamFaultsTestcase):
    pass
