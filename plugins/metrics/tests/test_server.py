"""The plugin's own HTTP server, scraped with a real HTTP client; registries per bus."""

from __future__ import annotations

import asyncio
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import aclbus_metrics
from aclbus import ACLMessage, Bus, Performative
from aclbus.errors import ConfigurationError
from aclbus.testing import MemoryConfig, eventually

pytestmark = pytest.mark.asyncio


def inform() -> ACLMessage:
    return ACLMessage(
        performative=Performative.INFORM,
        sender_id="tester",
        receiver_id="worker",
        message_type="ok",
    )


def sent(text: str) -> float:
    """``aclbus_messages_sent_total`` summed over its labels."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "aclbus_messages_sent_total"
    )


def get(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=5.0) as response:
        return response.headers["Content-Type"], response.read().decode()


def worker(bus: Bus) -> list[str]:
    got: list[str] = []

    @bus.agent("worker").on(Performative.INFORM)
    async def take(msg: ACLMessage) -> None:
        got.append(msg.message_id)

    return got


class TestServer(MemoryConfig):
    async def test_the_endpoint_serves_the_bus_metrics(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("ACLBUS_METRICS__PORT", "0")
        bus = self.make_bus(plugins=[aclbus_metrics])
        got = worker(bus)
        async with bus:
            address = aclbus_metrics.server_address(bus)
            assert address is not None
            host, port = address
            assert host == "127.0.0.1"
            for _ in range(3):
                await bus.send(inform())
            await eventually(lambda: len(got) == 3, what="the messages handled")
            content_type, text = await asyncio.to_thread(get, f"http://{host}:{port}/metrics")
        assert content_type == aclbus_metrics.CONTENT_TYPE
        assert sent(text) == 3
        assert aclbus_metrics.server_address(bus) is None
        with pytest.raises(urllib.error.URLError):  # the port is released at stop
            await asyncio.to_thread(get, f"http://{host}:{port}/metrics")

    async def test_no_port_no_server(self) -> None:
        bus = self.make_bus(plugins=[aclbus_metrics])
        async with bus:
            assert aclbus_metrics.server_address(bus) is None

    async def test_two_buses_count_apart(self) -> None:
        first, second = self.make_bus(plugins=[aclbus_metrics]), None
        got = worker(first)
        second = first.sibling()
        async with first, second:
            await first.send(inform())
            await second.send(inform())
            await second.send(inform())
            await eventually(lambda: len(got) == 3, what="the messages handled")
            texts = [
                aclbus_metrics.exposition(aclbus_metrics.registry(bus)).decode()
                for bus in (first, second)
            ]
        assert [sent(text) for text in texts] == [1, 2]

    async def test_the_global_registry_by_setting(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ACLBUS_METRICS__GLOBAL_REGISTRY", "true")
        bus = self.make_bus(plugins=[aclbus_metrics])
        other = bus.sibling()
        async with bus:
            await bus.send(inform())
            assert aclbus_metrics.registry(bus) is REGISTRY
            assert sent(aclbus_metrics.exposition(REGISTRY).decode()) == 1
            with pytest.raises(ConfigurationError, match="global registry"):
                await other.start()
        # stopped, the bus took its metrics out: a next bus may register there
        assert sent(aclbus_metrics.exposition(REGISTRY).decode()) == 0
        async with bus.sibling():
            pass


def documented(path: Path) -> set[str]:
    """The metric names in the first column of the metrics table of ``path``."""
    return set(re.findall(r"^\| `(aclbus_[a-z_]+)` \|", path.read_text(), re.MULTILINE))


class TestDocs(MemoryConfig):
    async def test_the_tables_name_every_exported_metric(self) -> None:
        bus = self.make_bus(plugins=[aclbus_metrics])
        async with bus:
            families = list(aclbus_metrics.registry(bus).collect())
        exported = {f.name + ("_total" if f.type == "counter" else "") for f in families}
        root = Path(__file__).parents[3]
        assert documented(root / "docs" / "operations.md") == exported
        assert documented(root / "plugins" / "metrics" / "README.md") == exported
