"""The conformance kit's communication patterns on a real nats-server."""

from __future__ import annotations

from aclbus.testing.cases.batches import BatchTestcase
from aclbus.testing.cases.dead_letters import DeadLetterTestcase
from aclbus.testing.cases.groups import GroupsTestcase
from aclbus.testing.cases.hops import HopProtectionTestcase
from aclbus.testing.cases.refusals import RefusalTestcase
from aclbus.testing.cases.scatter import (
    RequestFutureTestcase,
    ScatterGatherTestcase,
    ServiceInstancesTestcase,
)
from aclbus.testing.cases.topics import ContentFilterTestcase, TopicsTestcase
from aclbus.testing.cases.typed import TypedPayloadTestcase
from aclbus_nats.testing import NatsConfig


class TestBatches(NatsConfig, BatchTestcase):
    pass


class TestGroups(NatsConfig, GroupsTestcase):
    pass


class TestTopics(NatsConfig, TopicsTestcase):
    pass


class TestContentFilters(NatsConfig, ContentFilterTestcase):
    pass


class TestTypedPayload(NatsConfig, TypedPayloadTestcase):
    pass


class TestHopProtection(NatsConfig, HopProtectionTestcase):
    pass


class TestDeadLetters(NatsConfig, DeadLetterTestcase):
    pass


class TestRefusals(NatsConfig, RefusalTestcase):
    pass


class TestRequestFuture(NatsConfig, RequestFutureTestcase):
    pass


class TestScatterGather(NatsConfig, ScatterGatherTestcase):
    pass


class TestServiceInstances(NatsConfig, ServiceInstancesTestcase):
    pass
