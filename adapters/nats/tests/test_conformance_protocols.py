"""The FIPA interaction protocols' conformance cases on the a real nats-server."""

from __future__ import annotations

from aclbus.testing.cases.protocols import (
    CancelTestcase,
    ContractNetTestcase,
    ProtocolRobustnessTestcase,
    QueryProtocolTestcase,
    RequestProtocolTestcase,
    SubscribeProtocolTestcase,
)
from aclbus_nats.testing import NatsConfig


class TestRequestProtocol(NatsConfig, RequestProtocolTestcase):
    pass


class TestQueryProtocol(NatsConfig, QueryProtocolTestcase):
    pass


class TestContractNet(NatsConfig, ContractNetTestcase):
    pass


class TestSubscribeProtocol(NatsConfig, SubscribeProtocolTestcase):
    pass


class TestCancel(NatsConfig, CancelTestcase):
    pass


class TestProtocolRobustness(NatsConfig, ProtocolRobustnessTestcase):
    pass
