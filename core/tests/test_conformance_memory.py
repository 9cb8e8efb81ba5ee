"""The conformance kit on the in-memory engine: it must pass every testcase."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

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
    MemoryConfig,
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


class TestPubSub(MemoryConfig, PubSubTestcase):
    pass


class TestPersistentPubSub(MemoryConfig, PersistentPubSubTestcase):
    pass


class TestSubscription(MemoryConfig, SubscriptionTestcase):
    pass


class TestCompetingConsumers(MemoryConfig, CompetingConsumersTestcase):
    pass


class TestRequestReply(MemoryConfig, RequestReplyTestcase):
    pass


class TestAck(MemoryConfig, AckTestcase):
    pass


class TestNackDelay(MemoryConfig, NackDelayTestcase):
    pass


class TestInProgress(MemoryConfig, InProgressTestcase):
    pass


class TestTerm(MemoryConfig, TermTestcase):
    pass


class TestMaxDeliver(MemoryConfig, MaxDeliverTestcase):
    pass


class TestBackoff(MemoryConfig, BackoffTestcase):
    pass


class TestDedup(MemoryConfig, DedupTestcase):
    pass


class TestOrdering(MemoryConfig, OrderingTestcase):
    pass


class TestDurable(MemoryConfig, DurableTestcase):
    pass


class TestTTL(MemoryConfig, TTLTestcase):
    pass


class TestKeyValue(MemoryConfig, KeyValueTestcase):
    pass


class TestStoredMessages(MemoryConfig, StoredMessagesTestcase):
    pass


class TestClock(MemoryConfig, ClockTestcase):
    pass


class TestPointToPoint(MemoryConfig, PointToPointTestcase):
    pass


class TestBroadcast(MemoryConfig, BroadcastTestcase):
    pass


class TestBusRequest(MemoryConfig, BusRequestTestcase):
    pass


class TestAgentResilience(MemoryConfig, AgentResilienceTestcase):
    pass


class TestMiddlewareOrder(MemoryConfig, MiddlewareOrderTestcase):
    pass


class TestConsumerLimit(MemoryConfig, ConsumerLimitTestcase):
    pass


class TestAgentConsumers(MemoryConfig, AgentConsumersTestcase):
    pass


# -- the kit's own plugin: a capability the config lacks is a skip that says so -----------

_LIMITED = """
from typing import ClassVar

import pytest

from aclbus.backend import Capabilities
from aclbus.testing import MemoryConfig, NackDelayTestcase, PubSubTestcase


class LimitedConfig(MemoryConfig):
    name: ClassVar[str] = "limited"
    capabilities: ClassVar[Capabilities] = Capabilities(persistent=True, ack=True)


class TestNackDelay(LimitedConfig, NackDelayTestcase):
    pass


class TestPubSub(LimitedConfig, PubSubTestcase):
    pass


class TestMarker(LimitedConfig, PubSubTestcase):
    @pytest.mark.aclbus_requires("kv", "wildcards")
    async def test_needs_more(self, backend) -> None:
        raise AssertionError("must be skipped")
"""


def test_plugin_skips_what_the_backend_lacks(tmp_path: Path) -> None:
    # A fresh pytest in a directory without the workspace's configuration: pytest-asyncio in
    # strict mode, as a third-party adapter may run it; the kit is found by its entry point.
    (tmp_path / "test_limited.py").write_text(_LIMITED)
    report = tmp_path / "report.xml"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={report}"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "ACLBUS_TEST_BACKENDS"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    outcomes: dict[str, str] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}.{case.get('name')}"
        skipped = case.find("skipped")
        failed = case.find("failure") is not None or case.find("error") is not None
        outcomes[name] = (
            "failed" if failed else "passed" if skipped is None else skipped.get("message", "")
        )
    lacks = "backend 'limited' lacks capability: "
    for test in (n for n in dir(NackDelayTestcase) if n.startswith("test_")):
        assert outcomes.pop(f"TestNackDelay.{test}") == lacks + "nack_delay"
    assert outcomes.pop("TestMarker.test_needs_more") == lacks + "kv, wildcards"
    pubsub = [n for n in dir(PubSubTestcase) if n.startswith("test_")]
    assert pubsub
    assert outcomes == {
        f"{cls}.{t}": "passed" for cls in ("TestPubSub", "TestMarker") for t in pubsub
    }


def test_every_testcase_of_the_kit_is_mixed_with_each_shipped_config() -> None:
    """A testcase added to the kit but mixed nowhere would be a test that never runs."""
    from aclbus.testing import BACKEND_TESTCASES, BUS_TESTCASES

    root = Path(__file__).resolve().parents[2]
    for config, folder in (
        ("MemoryConfig", root / "core" / "tests"),
        ("NatsConfig", root / "adapters" / "nats" / "tests"),
    ):
        text = "\n".join(p.read_text() for p in folder.glob("test_conformance*.py"))
        for testcase in (*BACKEND_TESTCASES, *BUS_TESTCASES):
            assert f"({config}, {testcase.__name__})" in text, (
                f"{testcase.__name__} is not mixed with {config} in {folder}"
            )
