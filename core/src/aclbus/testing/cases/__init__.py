"""The conformance testcases, one module per concept; each class is abstract until mixed.

Backend-level (the `Backend` contract): `PubSubTestcase`, `PersistentPubSubTestcase`,
`SubscriptionTestcase`, `CompetingConsumersTestcase`, `RequestReplyTestcase`, `AckTestcase`,
`NackDelayTestcase`, `InProgressTestcase`, `TermTestcase`, `MaxDeliverTestcase`,
`BackoffTestcase`, `DedupTestcase`, `OrderingTestcase`, `DurableTestcase`, `TTLTestcase`,
`KeyValueTestcase`, `StoredMessagesTestcase`. Bus-level (a `Bus` on the backend):
`PointToPointTestcase`, `BroadcastTestcase`, `BusRequestTestcase`, `AgentResilienceTestcase`,
`MiddlewareOrderTestcase`.
"""

from __future__ import annotations

from aclbus.testing.cases.agents import BroadcastTestcase, BusRequestTestcase, PointToPointTestcase
from aclbus.testing.cases.base import BackendTestcase, BusTestcase
from aclbus.testing.cases.dedup import DedupTestcase
from aclbus.testing.cases.delivery import (
    AckTestcase,
    BackoffTestcase,
    InProgressTestcase,
    MaxDeliverTestcase,
    NackDelayTestcase,
    TermTestcase,
)
from aclbus.testing.cases.durable import DurableTestcase
from aclbus.testing.cases.expiry import TTLTestcase
from aclbus.testing.cases.kv import KeyValueTestcase
from aclbus.testing.cases.middleware import MiddlewareOrderTestcase
from aclbus.testing.cases.ordering import OrderingTestcase
from aclbus.testing.cases.pubsub import PersistentPubSubTestcase, PubSubTestcase
from aclbus.testing.cases.queue import CompetingConsumersTestcase
from aclbus.testing.cases.request import RequestReplyTestcase
from aclbus.testing.cases.resilience import AgentResilienceTestcase
from aclbus.testing.cases.stored import StoredMessagesTestcase
from aclbus.testing.cases.subscription import SubscriptionTestcase

__all__ = [
    "AckTestcase",
    "AgentResilienceTestcase",
    "BackendTestcase",
    "BackoffTestcase",
    "BroadcastTestcase",
    "BusRequestTestcase",
    "BusTestcase",
    "CompetingConsumersTestcase",
    "DedupTestcase",
    "DurableTestcase",
    "InProgressTestcase",
    "KeyValueTestcase",
    "MaxDeliverTestcase",
    "MiddlewareOrderTestcase",
    "NackDelayTestcase",
    "OrderingTestcase",
    "PersistentPubSubTestcase",
    "PointToPointTestcase",
    "PubSubTestcase",
    "RequestReplyTestcase",
    "StoredMessagesTestcase",
    "SubscriptionTestcase",
    "TTLTestcase",
    "TermTestcase",
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
)
"""Every testcase of the `Backend` contract."""

BUS_TESTCASES: tuple[type[BusTestcase], ...] = (
    PointToPointTestcase,
    BroadcastTestcase,
    BusRequestTestcase,
    AgentResilienceTestcase,
    MiddlewareOrderTestcase,
)
"""Every testcase that runs a `Bus` on the backend."""
