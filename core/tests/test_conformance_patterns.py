"""The conformance kit's communication patterns on the in-memory engine."""

from __future__ import annotations

from aclbus.testing import MemoryConfig
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


class TestBatches(MemoryConfig, BatchTestcase):
    pass


class TestGroups(MemoryConfig, GroupsTestcase):
    pass


class TestTopics(MemoryConfig, TopicsTestcase):
    pass


class TestContentFilters(MemoryConfig, ContentFilterTestcase):
    pass


class TestTypedPayload(MemoryConfig, TypedPayloadTestcase):
    pass


class TestHopProtection(MemoryConfig, HopProtectionTestcase):
    pass


class TestDeadLetters(MemoryConfig, DeadLetterTestcase):
    pass


class TestRefusals(MemoryConfig, RefusalTestcase):
    pass


class TestRequestFuture(MemoryConfig, RequestFutureTestcase):
    pass


class TestScatterGather(MemoryConfig, ScatterGatherTestcase):
    pass


class TestServiceInstances(MemoryConfig, ServiceInstancesTestcase):
    pass
