"""The conformance kit: one suite of abstract testcases that every backend adapter runs.

Mix a backend config with each testcase; pytest collects the mix, never the testcase alone:

```python
from aclbus.testing import AckTestcase, MemoryConfig

class TestAck(MemoryConfig, AckTestcase):
    pass
```

The kit is also a pytest plugin (entry point ``pytest11: aclbus``), which registers its
markers and skips tests that need a capability the config's backend lacks. See
``docs/testing.md``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

import pytest

# The kit's asserts must explain themselves like a test module's: rewrite them on import.
# (The names below load lazily, so that the pytest plugin costs nothing until they are used.)
pytest.register_assert_rewrite("aclbus.testing.cases", "aclbus.testing.collector")

if TYPE_CHECKING:
    from aclbus.testing.cases import (
        BACKEND_TESTCASES,
        BUS_TESTCASES,
        AckTestcase,
        AgentConsumersTestcase,
        AgentResilienceTestcase,
        BackendTestcase,
        BackoffTestcase,
        BatchTestcase,
        BroadcastTestcase,
        BusRequestTestcase,
        BusTestcase,
        ClockTestcase,
        CompetingConsumersTestcase,
        ConsumerLimitTestcase,
        ContentFilterTestcase,
        DeadLetterTestcase,
        DedupTestcase,
        DirectoryTestcase,
        DurableTestcase,
        GroupsTestcase,
        HopProtectionTestcase,
        InProgressTestcase,
        KeyValueTestcase,
        MaxDeliverTestcase,
        MiddlewareOrderTestcase,
        NackDelayTestcase,
        OrderingTestcase,
        PersistentPubSubTestcase,
        PointToPointTestcase,
        PresenceTestcase,
        PubSubTestcase,
        RefusalTestcase,
        RequestFutureTestcase,
        RequestReplyTestcase,
        ScatterGatherTestcase,
        ServiceInstancesTestcase,
        SharedMapTestcase,
        StoredMessagesTestcase,
        StreamFaultsTestcase,
        StreamingTestcase,
        SubscriptionTestcase,
        TermTestcase,
        TopicsTestcase,
        TTLTestcase,
        TypedPayloadTestcase,
    )
    from aclbus.testing.collector import DEFAULT_TIMEOUT, Collector, Deliveries, eventually
    from aclbus.testing.config import BackendConfig, MemoryConfig

_MODULES = {
    "BACKEND_TESTCASES": "aclbus.testing.cases",
    "BUS_TESTCASES": "aclbus.testing.cases",
    "AckTestcase": "aclbus.testing.cases",
    "AgentConsumersTestcase": "aclbus.testing.cases",
    "ConsumerLimitTestcase": "aclbus.testing.cases",
    "AgentResilienceTestcase": "aclbus.testing.cases",
    "BackendTestcase": "aclbus.testing.cases",
    "BackoffTestcase": "aclbus.testing.cases",
    "BatchTestcase": "aclbus.testing.cases",
    "BroadcastTestcase": "aclbus.testing.cases",
    "BusRequestTestcase": "aclbus.testing.cases",
    "BusTestcase": "aclbus.testing.cases",
    "ClockTestcase": "aclbus.testing.cases",
    "CompetingConsumersTestcase": "aclbus.testing.cases",
    "DeadLetterTestcase": "aclbus.testing.cases",
    "DedupTestcase": "aclbus.testing.cases",
    "DurableTestcase": "aclbus.testing.cases",
    "InProgressTestcase": "aclbus.testing.cases",
    "KeyValueTestcase": "aclbus.testing.cases",
    "MaxDeliverTestcase": "aclbus.testing.cases",
    "MiddlewareOrderTestcase": "aclbus.testing.cases",
    "NackDelayTestcase": "aclbus.testing.cases",
    "OrderingTestcase": "aclbus.testing.cases",
    "PersistentPubSubTestcase": "aclbus.testing.cases",
    "PointToPointTestcase": "aclbus.testing.cases",
    "PubSubTestcase": "aclbus.testing.cases",
    "RequestReplyTestcase": "aclbus.testing.cases",
    "StoredMessagesTestcase": "aclbus.testing.cases",
    "SubscriptionTestcase": "aclbus.testing.cases",
    "TermTestcase": "aclbus.testing.cases",
    "TTLTestcase": "aclbus.testing.cases",
    "CancelTestcase": "aclbus.testing.cases",
    "ContractNetTestcase": "aclbus.testing.cases",
    "ProtocolRobustnessTestcase": "aclbus.testing.cases",
    "QueryProtocolTestcase": "aclbus.testing.cases",
    "RequestProtocolTestcase": "aclbus.testing.cases",
    "SubscribeProtocolTestcase": "aclbus.testing.cases",
    "ContentFilterTestcase": "aclbus.testing.cases",
    "DirectoryTestcase": "aclbus.testing.cases",
    "GroupsTestcase": "aclbus.testing.cases",
    "HopProtectionTestcase": "aclbus.testing.cases",
    "PresenceTestcase": "aclbus.testing.cases",
    "RefusalTestcase": "aclbus.testing.cases",
    "RequestFutureTestcase": "aclbus.testing.cases",
    "ScatterGatherTestcase": "aclbus.testing.cases",
    "ServiceInstancesTestcase": "aclbus.testing.cases",
    "SharedMapTestcase": "aclbus.testing.cases",
    "StreamFaultsTestcase": "aclbus.testing.cases",
    "StreamingTestcase": "aclbus.testing.cases",
    "TopicsTestcase": "aclbus.testing.cases",
    "TypedPayloadTestcase": "aclbus.testing.cases",
    "DEFAULT_TIMEOUT": "aclbus.testing.collector",
    "Collector": "aclbus.testing.collector",
    "Deliveries": "aclbus.testing.collector",
    "eventually": "aclbus.testing.collector",
    "BackendConfig": "aclbus.testing.config",
    "MemoryConfig": "aclbus.testing.config",
}

__all__ = [
    "BACKEND_TESTCASES",
    "BUS_TESTCASES",
    "DEFAULT_TIMEOUT",
    "AckTestcase",
    "AgentConsumersTestcase",
    "AgentResilienceTestcase",
    "BackendConfig",
    "BackendTestcase",
    "BackoffTestcase",
    "BatchTestcase",
    "BroadcastTestcase",
    "BusRequestTestcase",
    "BusTestcase",
    "CancelTestcase",
    "ClockTestcase",
    "Collector",
    "CompetingConsumersTestcase",
    "ConsumerLimitTestcase",
    "DeadLetterTestcase",
    "ContentFilterTestcase",
    "ContractNetTestcase",
    "DedupTestcase",
    "Deliveries",
    "DirectoryTestcase",
    "DurableTestcase",
    "GroupsTestcase",
    "HopProtectionTestcase",
    "InProgressTestcase",
    "KeyValueTestcase",
    "MaxDeliverTestcase",
    "MemoryConfig",
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
    "eventually",
]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
