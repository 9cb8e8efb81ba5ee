"""The conformance kit on a real nats-server: everything the memory engine passes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

import nats
import pytest_asyncio

from aclbus.backend import Backend, Capabilities
from aclbus.settings import Settings, StreamLimits
from aclbus.testing import (
    AckTestcase,
    AgentResilienceTestcase,
    BackendConfig,
    BackoffTestcase,
    BroadcastTestcase,
    BusRequestTestcase,
    CompetingConsumersTestcase,
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
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.settings import NatsSettings


class NatsConfig(BackendConfig):
    """A NatsBackend connected to the session's embedded nats-server."""

    name: ClassVar[str] = NatsBackend.name
    capabilities: ClassVar[Capabilities] = NatsBackend.capabilities
    _url: str = ""

    @pytest_asyncio.fixture(autouse=True)
    async def _on_server(self, nats_server: EmbeddedServer) -> AsyncIterator[None]:
        self._url = nats_server.url
        yield
        await _delete_streams(self._url, self.namespace.upper())

    def make_settings(self, **overrides: Any) -> Settings:
        """Small in-memory streams: each test provisions its own under its namespace."""
        overrides.setdefault("streams", StreamLimits(max_bytes=8 << 20, storage="memory"))
        return super().make_settings(**overrides)

    def make_backend(self) -> Backend:
        return NatsBackend(self.make_settings(), nats=NatsSettings(servers=[self._url]))


async def _delete_streams(url: str, namespace: str) -> None:
    # Streams reserve their max_bytes against the server's limits: leave none behind.
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for name in await js.streams_info():
            if namespace in name.config.name:
                await js.delete_stream(name.config.name)
    finally:
        await nc.close()


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
