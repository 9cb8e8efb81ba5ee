"""End to end: the real Prometheus server, the real alerts.yml, a running gateway's /metrics.

Prometheus (Debian's package, like promtool) runs on loopback with a temporary data folder,
scraping every second a real ``aclbus serve`` on the session's nats-server. The gateway hosts
agent ``worker`` for a webhook (a real HTTP receiver, ``webhook_sink.py``), so the worker's
messages are consumed, and counted, by the gateway's bus. The rules are
deploy/prometheus/alerts.yml with one change, in a temporary copy: every ``for:`` is ``0s``,
so that an alert fires within seconds instead of minutes (the windows themselves are
promtool's to test, in deploy/prometheus/tests).

The test sends messages to ``worker`` until Prometheus has evaluated a failure ratio of 0 and
the delivery-failure alert is not firing; then it makes every other message fail (the webhook
answers 500, its one attempt is spent, the bus dead-letters the message) and waits for the
alert to fire, read from ``/api/v1/alerts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aclbus import Bus, Performative
from aclbus_nats.testing import delete_streams

from .webhook_sink import webhook_sink

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "aclbus.json"
ALERT = "AclbusDeliveryFailureRate"
JOB = "aclbus-gateway"
TOKEN = "worker-token-0123456789"
LISTENING = re.compile(rb"listening on http://(127\.0\.0\.1:\d+)")

pytestmark = pytest.mark.asyncio


def dashboard_queries(panels: list[dict[str, Any]]) -> Iterator[str]:
    for panel in panels:
        for target in panel.get("targets", []):
            yield str(target["expr"])
        yield from dashboard_queries(panel.get("panels", []))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    """A Prometheus server process and its HTTP API.

    Args:
        binary: The ``prometheus`` executable.
        folder: Where its configuration, rules, data and log go.
        target: The ``host:port`` it scrapes as job ``aclbus-gateway``.
    """

    def __init__(self, binary: Path, folder: Path, target: str) -> None:
        # `for:` durations only: the thresholds and expressions are the real ones.
        rules = re.sub(r"(?m)^(\s+for:) \S+$", r"\1 0s", RULES.read_text())
        assert rules.count("for: 0s") == RULES.read_text().count("for:")
        (folder / "alerts.yml").write_text(rules)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
        }
        (folder / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "prometheus.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    str(binary),
                    f"--config.file={folder / 'prometheus.yml'}",
                    f"--storage.tsdb.path={folder / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def tail(self) -> str:
        """The end of the server's log, for a failure's message."""
        return "\n--- prometheus log ---\n" + self.log.read_text(errors="replace")[-4000:]

    def get(self, path: str, **query: str) -> Any:
        """GET an API path: its ``data``, None while the server does not answer; an error
        it answers (a query it cannot parse: 400) fails the test with its message."""
        url = f"{self.url}{path}?{urllib.parse.urlencode(query)}"
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as error:
            body = json.loads(error.read())
        except (OSError, ValueError):
            return None
        assert body["status"] == "success", (query, body)
        return body["data"]

    def wait_ready(self) -> bool:
        """Wait until the server answers with its configuration loaded (True), or exits
        (False: its port was taken meanwhile, or worse; see `tail`); 30 seconds at most."""
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2.0) as response:
                    if response.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.25)
        if self.process.poll() is None:
            pytest.fail(f"Prometheus not ready after 30 s{self.tail()}")
        return False

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's samples (none while the server does not answer)."""
        data = self.get("/api/v1/query", query=expr)
        return [] if data is None else list(data["result"])

    def alerts(self, name: str) -> list[dict[str, Any]]:
        """The active (pending or firing) alerts named ``name``."""
        data = self.get("/api/v1/alerts")
        return (
            [] if data is None else [a for a in data["alerts"] if a["labels"]["alertname"] == name]
        )

    def stop(self) -> None:
        """Stop it by its PID, killing it if it does not stop within 10 seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


async def until(condition: Callable[[], bool], what: str, log: Callable[[], str]) -> None:
    """Wait until ``condition`` holds (asked in a thread: it makes HTTP calls), polling every
    0.25 s, for 30 seconds at most."""
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        if await asyncio.to_thread(condition):
            return
        await asyncio.sleep(0.25)
    pytest.fail(f"after 30 s, still not: {what}{log()}")


@pytest.fixture
def bus_environment(monkeypatch: pytest.MonkeyPatch, nats_url: str) -> dict[str, str]:
    """The settings the target and the test's own bus share: the session's nats-server, a
    subject prefix of their own, small in-memory streams, and only the plugins they need."""
    for name in list(os.environ):
        if name.startswith("ACLBUS_"):
            monkeypatch.delenv(name)
    settings = {
        "ACLBUS_BACKEND": "nats",
        "ACLBUS_NATS__SERVERS": nats_url,
        "ACLBUS_SUBJECT_PREFIX": f"ops{uuid.uuid4().hex[:8]}",
        "ACLBUS_STREAMS__STORAGE": "memory",
        "ACLBUS_STREAMS__MAX_BYTES": str(8 << 20),
        "ACLBUS_PLUGINS": "json,nats,metrics",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return settings


@pytest.fixture
async def scrape_target(
    bus_environment: dict[str, str], nats_url: str, tmp_path: Path
) -> AsyncIterator[str]:
    """A real ``aclbus serve`` hosting ``worker`` for a webhook: its ``host:port``."""
    env = {
        **os.environ,
        "ACLBUS_PLUGINS": "json,nats,metrics,gateway",
        "ACLBUS_METRICS__POLL_INTERVAL": "1",
        "ACLBUS_GATEWAY__TOKENS": json.dumps({"worker": TOKEN}),
        # One attempt: a refused POST is dead-lettered at once, not retried for minutes.
        "ACLBUS_GATEWAY__WEBHOOK_ATTEMPTS": "1",
    }
    log = tmp_path / "gateway.log"
    aclbus = Path(sys.executable).with_name("aclbus")
    with webhook_sink() as sink, log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            str(aclbus),
            "serve",
            "--port",
            "0",
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=tmp_path,
        )
        try:
            assert process.stdout is not None
            address = None
            deadline = time.monotonic() + 30.0
            while address is None and time.monotonic() < deadline:
                line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
                if not line:
                    pytest.fail(f"aclbus serve exited:\n{log.read_text()}")
                found = LISTENING.search(line)
                address = found.group(1).decode() if found else None
            assert address is not None, log.read_text()
            registered = await asyncio.to_thread(_register_webhook, address, sink.url)
            assert registered == 201, log.read_text()
            yield address
        finally:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=15)
            except TimeoutError:
                process.kill()
                await asyncio.wait_for(process.wait(), timeout=10)
            await delete_streams(nats_url, bus_environment["ACLBUS_SUBJECT_PREFIX"])


def _register_webhook(address: str, url: str) -> int:
    """POST /communication/handlers as ``worker``: its ``order`` messages to ``url``."""
    body = json.dumps({"url": url, "performatives": ["inform"], "message_type": "order"})
    request = urllib.request.Request(
        f"http://{address}/communication/handlers",
        data=body.encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


@pytest.fixture
def prometheus(prometheus_binary: Path, scrape_target: str, tmp_path: Path) -> Iterator[Prometheus]:
    """The Prometheus server scraping ``scrape_target`` with the rules of alerts.yml, ready.

    Its port is found free, then bound by Prometheus: should another process take it in
    between, the server exits and is started again on another (3 tries).
    """
    for attempt in range(3):
        folder = tmp_path / f"prometheus-{attempt}"
        folder.mkdir()
        server = Prometheus(prometheus_binary, folder, scrape_target)
        try:
            if server.wait_ready():
                yield server
                return
        finally:
            server.stop()
    pytest.fail(f"Prometheus exited three times{server.tail()}")


async def test_the_delivery_failure_alert_fires_when_handlers_fail(prometheus: Prometheus) -> None:
    failing = asyncio.Event()
    sent = 0

    async with Bus() as bus:
        client = bus.agent("client")

        async def traffic() -> None:
            nonlocal sent
            for n in range(10_000):  # 20 a second: far more than the test lasts
                fail = failing.is_set() and n % 2 == 0
                await bus.send(
                    client.message(
                        Performative.INFORM,
                        receiver_id="worker",
                        message_type="order",
                        payload={"n": n, "fail": fail},
                    )
                )
                sent += 1
                await asyncio.sleep(0.05)

        task = asyncio.create_task(traffic())
        try:
            # Handled messages only: Prometheus has scraped them and evaluated a ratio of 0.
            def ratio_is_zero() -> bool:
                samples = prometheus.query(f'aclbus:delivery_failures:ratio_rate5m{{job="{JOB}"}}')
                return bool(samples) and float(samples[0]["value"][1]) == 0.0

            await until(ratio_is_zero, "a delivery failure ratio of 0", prometheus.tail)
            await asyncio.sleep(2.5)  # the alert rules evaluated it at least twice (every 1 s)
            assert ratio_is_zero(), prometheus.tail()
            assert prometheus.alerts(ALERT) == [], prometheus.tail()

            failing.set()

            def firing() -> bool:
                return any(a["state"] == "firing" for a in prometheus.alerts(ALERT))

            await until(firing, f"{ALERT} firing", prometheus.tail)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    (alert,) = prometheus.alerts(ALERT)
    assert alert["labels"] == {"alertname": ALERT, "job": JOB, "severity": "critical"}
    assert alert["annotations"]["runbook_url"] == "docs/operations.md#aclbusdeliveryfailurerate"
    assert float(alert["value"]) > 0.0001
    dead = prometheus.query(f'sum(aclbus_messages_dead_lettered_total{{job="{JOB}"}})')
    assert dead, prometheus.tail()
    assert float(dead[0]["value"][1]) > 0, prometheus.tail()
    assert sent > 0

    # The real server evaluated every rule of alerts.yml without an error, and parses every
    # query of the dashboard (its Grafana variables given values).
    groups = prometheus.get("/api/v1/rules")["groups"]
    unhealthy = [
        (r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"
    ]
    assert sum(len(g["rules"]) for g in groups) == RULES.read_text().count("expr:")
    assert unhealthy == [], prometheus.tail()
    dashboard = json.loads(DASHBOARD.read_text())
    for expr in dashboard_queries(dashboard["panels"]):
        concrete = expr.replace("$__rate_interval", "1m").replace("$job", ".*")
        assert prometheus.get("/api/v1/query", query=concrete) is not None, concrete
