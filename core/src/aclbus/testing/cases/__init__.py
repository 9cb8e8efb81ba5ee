"""The conformance testcases, one module per concept; each class is abstract until mixed.

Backend-level (the `Backend` contract): `PubSubTestcase`, `PersistentPubSubTestcase`,
`SubscriptionTestcase`, `CompetingConsumersTestcase`, `RequestReplyTestcase`, `AckTestcase`,
`NackDelayTestcase`, `InProgressTestcase`, `TermTestcase`, `MaxDeliverTestcase`,
`BackoffTestcase`, `DedupTestcase`, `OrderingTestcase`, `DurableTestcase`, `TTLTestcase`,
`KeyValueTestcase`, `StoredMessagesTestcase`, `ClockTestcase`, `ConsumerLimitTestcase`.
Bus-level (a `Bus` on the backend): `PointToPointTestcase`, `BroadcastTestcase`,
`BusRequestTestcase`, `AgentResilienceTestcase`, `MiddlewareOrderTestcase`,
`AgentConsumersTestcase`, `DeadLetterTestcase`, and the communication patterns:
`BatchTestcase`, `GroupsTestcase`,
`TopicsTestcase`, `ContentFilterTestcase`, `TypedPayloadTestcase`, `HopProtectionTestcase`,
`RefusalTestcase`,
`RequestFutureTestcase`, `ScatterGatherTestcase`, `ServiceInstancesTestcase`,
`StreamingTestcase`, `StreamFaultsTestcase`, `SharedMapTestcase`, `DirectoryTestcase`,
`PresenceTestcase`, and the FIPA protocols: `RequestProtocolTestcase`, `QueryProtocolTestcase`,
`ContractNetTestcase`, `SubscribeProtocolTestcase`, `CancelTestcase`,
`ProtocolRobustnessTestcase`.
"""

from __future__ import annotations

from aclbus.testing.cases.agents import BroadcastTestcase, BusRequestTestcase, PointToPointTestcase
from aclbus.testing.cases.base import BackendTestcase, BusTestcase
from aclbus.testing.cases.batches import BatchTestcase
from aclbus.testing.cases.clock import ClockTestcase
from aclbus.testing.cases.consumers import AgentConsumersTestcase, ConsumerLimitTestcase
from aclbus.testing.cases.dead_letters import DeadLetterTestcase
from aclbus.testing.cases.dedup import DedupTestcase
from aclbus.testing.cases.delivery import (
    AckTestcase,
    BackoffTestcase,
    InProgressTestcase,
    MaxDeliverTestcase,
    NackDelayTestcase,
    TermTestcase,
)
from aclbus.testing.cases.directory import DirectoryTestcase, PresenceTestcase
from aclbus.testing.cases.durable import DurableTestcase
from aclbus.testing.cases.expiry import TTLTestcase
from aclbus.testing.cases.groups import GroupsTestcase
from aclbus.testing.cases.hops import HopProtectionTestcase
from aclbus.testing.cases.kv import KeyValueTestcase
from aclbus.testing.cases.middleware import MiddlewareOrderTestcase
from aclbus.testing.cases.ordering import OrderingTestcase
from aclbus.testing.cases.protocols import (
    CancelTestcase,
    ContractNetTestcase,
    ProtocolRobustnessTestcase,
    QueryProtocolTestcase,
    RequestProtocolTestcase,
    SubscribeProtocolTestcase,
)
from aclbus.testing.cases.pubsub import PersistentPubSubTestcase, PubSubTestcase
from aclbus.testing.cases.queue import CompetingConsumersTestcase
from aclbus.testing.cases.refusals import RefusalTestcase
from aclbus.testing.cases.request import RequestReplyTestcase
from aclbus.testing.cases.resilience import AgentResilienceTestcase
from aclbus.testing.cases.scatter import (
    RequestFutureTestcase,
    ScatterGatherTestcase,
    ServiceInstancesTestcase,
)
from aclbus.testing.cases.shared_state import SharedMapTestcase
from aclbus.testing.cases.stored import StoredMessagesTestcase
from aclbus.testing.cases.stream_faults import StreamFaultsTestcase
from aclbus.testing.cases.streaming import StreamingTestcase
from aclbus.testing.cases.subscription import SubscriptionTestcase
from aclbus.testing.cases.topics import ContentFilterTestcase, TopicsTestcase
from aclbus.testing.cases.typed import TypedPayloadTestcase

__all__ = [
    "AckTestcase",
    "AgentConsumersTestcase",
    "AgentResilienceTestcase",
    "BackendTestcase",
    "BackoffTestcase",
    "BatchTestcase",
    "BroadcastTestcase",
    "BusRequestTestcase",
    "BusTestcase",
    "CancelTestcase",
    "ClockTestcase",
    "CompetingConsumersTestcase",
    "ConsumerLimitTestcase",
    "ContentFilterTestcase",
    "ContractNetTestcase",
    "DeadLetterTestcase",
    "DedupTestcase",
    "DirectoryTestcase",
    "DurableTestcase",
    "GroupsTestcase",
    "HopProtectionTestcase",
    "InProgressTestcase",
    "KeyValueTestcase",
    "MaxDeliverTestcase",
    "MiddlewareOrderTestcase",
    "NackDelayTestcase",
    "OrderingTestcase",
    "PersistentPubSubTestcase",
    "PointToPointTestcase",
    "PresenceTestcase",
    "ProtocolRobustnessTestcase",
    "PubSubTestcase",
    "QueryProtocolTestcase",
    "RefusalTestcase",
    "RequestFutureTestcase",
    "RequestProtocolTestcase",
    "RequestReplyTestcase",
    "ScatterGatherTestcase",
    "ServiceInstancesTestcase",
    "SharedMapTestcase",
    "StoredMessagesTestcase",
    "StreamFaultsTestcase",
    "StreamingTestcase",
    "SubscribeProtocolTestcase",
    "SubscriptionTestcase",
    "TTLTestcase",
    "TermTestcase",
    "TopicsTestcase",
    "TypedPayloadTestcase",
]

BACKEND_TESTCASES: tuple[type[BackendTestcase], ...] = (
    PubSubTestcase,
    PersistentPubSubTestcase,
    SubscriptionTestcase,
    CompetingConsumersTestcase,
    RequestReplyTestcase,
    AckTestcase,
    NackDelayTestcase,
    InProgressTestcase,
    TermTestcase,
    MaxDeliverTestcase,
    BackoffTestcase,
    DedupTestcase,
    OrderingTestcase,
    DurableTestcase,
    TTLTestcase,
    KeyValueTestcase,
    StoredMessagesTestcase,
    ClockTestcase,
    ConsumerLimitTestcase,
)
"""Every testcase of the `Backend` contract."""

BUS_TESTCASES: tuple[type[BusTestcase], ...] = (
    PointToPointTestcase,
    BroadcastTestcase,
    BusRequestTestcase,
    AgentResilienceTestcase,
    MiddlewareOrderTestcase,
    AgentConsumersTestcase,
    DeadLetterTestcase,
    BatchTestcase,
    ContentFilterTestcase,
    DirectoryTestcase,
    GroupsTestcase,
    HopProtectionTestcase,
    PresenceTestcase,
    RefusalTestcase,
    RequestFutureTestcase,
    ScatterGatherTestcase,
    ServiceInstancesTestcase,
    SharedMapTestcase,
    StreamFaultsTestcase,
    StreamingTestcase,
    TopicsTestcase,
    TypedPayloadTestcase,
)
"""Every testcase that runs a `Bus` on the backend."""
