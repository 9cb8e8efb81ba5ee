"""The conformance kit on a real nats-server: everything the memory engine passes."""

from __future__ import annotations

from aclbus.testing import (
    AckTestcase,
    AgentConsumersTestcase,
    AgentResilienceTestcase,
    BackoffTestcase,
    BroadcastTestcase,
    BusRequestTestcase,
    ClockTestcase,
    CompetingConsumersTestcase,
    ConsumerLimitTestcase,
    DedupTestcase,
    DurableTestcase,
    InProgressTestcase,
    KeyValueTestcase,
    MaxDeliverTestcase,
    MiddlewareOrderTestcase,
    NackDelayTestcase,
    OrderingTestcase,
    PersistentPubSubTestcase,
    PointToPointTestcase,
    PubSubTestcase,
    RequestReplyTestcase,
    StoredMessagesTestcase,
    SubscriptionTestcase,
    TermTestcase,
    TTLTestcase,
)
from aclbus_nats.testing import NatsConfig


class TestPubSub(NatsConfig, PubSubTestcase):
    pass


class TestPersistentPubSub(NatsConfig, PersistentPubSubTestcase):
    pass


class TestSubscription(NatsConfig, SubscriptionTestcase):
    pass


class TestCompetingConsumers(NatsConfig, CompetingConsumersTestcase):
    pass


class TestRequestReply(NatsConfig, RequestReplyTestcase):
    pass


class TestAck(NatsConfig, AckTestcase):
    pass


class TestNackDelay(NatsConfig, NackDelayTestcase):
    pass


class TestInProgress(NatsConfig, InProgressTestcase):
    pass


class TestTerm(NatsConfig, TermTestcase):
    pass


class TestMaxDeliver(NatsConfig, MaxDeliverTestcase):
    pass


class TestBackoff(NatsConfig, BackoffTestcase):
    pass


class TestDedup(NatsConfig, DedupTestcase):
    pass


class TestOrdering(NatsConfig, OrderingTestcase):
    pass


class TestDurable(NatsConfig, DurableTestcase):
    pass


class TestTTL(NatsConfig, TTLTestcase):
    pass


class TestKeyValue(NatsConfig, KeyValueTestcase):
    pass


class TestStoredMessages(NatsConfig, StoredMessagesTestcase):
    pass


class TestClock(NatsConfig, ClockTestcase):
    pass


class TestPointToPoint(NatsConfig, PointToPointTestcase):
    pass


class TestBroadcast(NatsConfig, BroadcastTestcase):
    pass


class TestBusRequest(NatsConfig, BusRequestTestcase):
    pass


class TestAgentResilience(NatsConfig, AgentResilienceTestcase):
    pass


class TestMiddlewareOrder(NatsConfig, MiddlewareOrderTestcase):
    pass


class TestConsumerLimit(NatsConfig, ConsumerLimitTestcase):
    pass


class TestAgentConsumers(NatsConfig, AgentConsumersTestcase):
    pass
