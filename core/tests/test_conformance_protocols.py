"""The FIPA interaction protocols' conformance cases on the in-memory engine."""

from __future__ import annotations

from aclbus.testing import MemoryConfig
from aclbus.testing.cases.protocols import (
    CancelTestcase,
    ContractNetTestcase,
    ProtocolRobustnessTestcase,
    QueryProtocolTestcase,
    RequestProtocolTestcase,
    SubscribeProtocolTestcase,
)


class TestRequestProtocol(MemoryConfig, RequestProtocolTestcase):
    pass


class TestQueryProtocol(MemoryConfig, QueryProtocolTestcase):
    pass


class TestContractNet(MemoryConfig, ContractNetTestcase):
    pass


class TestSubscribeProtocol(MemoryConfig, SubscribeProtocolTestcase):
    pass


class TestCancel(MemoryConfig, CancelTestcase):
    pass


class TestProtocolRobustness(MemoryConfig, ProtocolRobustnessTestcase):
    pass
