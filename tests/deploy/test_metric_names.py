"""Every metric the alert rules and the Grafana dashboard query is one the plugin exports.

The PromQL of deploy/prometheus/alerts.yml and of every panel and variable of
deploy/grafana/aclbus.json is tokenized for metric names (functions, keywords, label names,
label values, ranges and Grafana variables left out), and compared with what a real bus with
the plugin exposes after some traffic: each family of its exposition with the sample names
of its type (``_total`` for counters; ``_bucket``, ``_sum`` and ``_count`` for histograms).
Recording rules of alerts.yml are known names too, and so is Prometheus' own ``up``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

import aclbus_metrics
from aclbus import ACLMessage, Bus, Performative

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "aclbus.json"

PROMETHEUS_OWN = {"up"}
"""Series Prometheus writes for every scrape target itself."""

KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` (PromQL, possibly with Grafana variables) selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables
    # label lists of aggregations and vector matching
    lists = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
    text = re.sub(lists, " ", text)
    names: set[str] = set()
    for match in re.finditer(rf"(?<![\w:.]){_NAME}", text):
        name = match.group()
        if name.lower() in KEYWORDS or re.match(r"\s*\(", text[match.end() :]):
            continue  # a keyword, or a function / an aggregation being called
        names.add(name)
    return names


def rule_expressions() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert") or rule["record"], rule["expr"]


def recorded() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def dashboard_expressions() -> Iterator[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            # label_values(metric, label): only the metric is a name
            yield f"variable {variable['name']}", re.sub(r",\s*\w+\)$", ")", query)


def exported_names(text: str) -> set[str]:
    """The sample names of every metric family in an exposition, empty families included."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in suffixes[family.type])
        names.update(sample.name for sample in family.samples)
    return names


@pytest.fixture
async def exported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> set[str]:
    """What a memory bus with the plugin exposes after sends, a request and a poll."""
    for name in list(os.environ):
        if name.startswith("ACLBUS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ACLBUS_BACKEND", "memory")
    monkeypatch.setenv("ACLBUS_PLUGINS", "json,memory,metrics")
    monkeypatch.setenv("ACLBUS_METRICS__ENABLED", "true")
    bus = Bus()
    got: list[str] = []

    @bus.agent("worker").on(Performative.INFORM)
    async def take(msg: ACLMessage) -> None:
        got.append(msg.message_id)

    @bus.agent("worker").on(Performative.REQUEST)
    async def answer(msg: ACLMessage) -> ACLMessage:
        return msg.reply(Performative.INFORM, payload="yes")

    async with bus:
        client = bus.agent("client")
        for _ in range(3):
            await bus.send(client.message(Performative.INFORM, receiver_id="worker"))
        await bus.request(client.message(Performative.REQUEST, receiver_id="worker"), timeout=5)
        await aclbus_metrics.poll(bus)
        text = aclbus_metrics.exposition(aclbus_metrics.registry(bus)).decode()
    assert got, "no message was handled"
    return exported_names(text)


def unknown(expressions: Iterator[tuple[str, str]], known: set[str]) -> dict[str, set[str]]:
    found = {where: metric_names(expr) - known for where, expr in expressions}
    return {where: names for where, names in found.items() if names}


def test_the_tokenizer_finds_metrics_and_only_metrics() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, job) (rate(a_bucket{job=~"$job", le!="x y"}'
        "[$__rate_interval]))) / on (job) group_left () sum without (instance) (b_total offset"
        " 5m) > bool 1e-4 unless c:recorded:ratio or avg_over_time(d[1d:1m]) and up == 0"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c:recorded:ratio", "d", "up"}


def test_a_misspelled_metric_is_caught() -> None:
    known = {"aclbus_messages_sent_total"}
    queries = [
        ("ok", "rate(aclbus_messages_sent_total[5m])"),
        ("typo", 'sum(rate(aclbus_mesages_sent_total{job="a"}[5m]))'),
    ]
    assert unknown(iter(queries), known) == {"typo": {"aclbus_mesages_sent_total"}}


def test_the_exposition_holds_what_the_plugin_documents(exported: set[str]) -> None:
    # The names the plugin's own docs table lists, with their suffixes, are all there: the
    # comparison below stands on a complete list.
    assert {
        "aclbus_messages_sent_total",
        "aclbus_messages_received_total",
        "aclbus_message_latency_seconds_bucket",
        "aclbus_message_latency_seconds_sum",
        "aclbus_message_latency_seconds_count",
        "aclbus_requests_total",
        "aclbus_messages_dead_lettered_total",
        "aclbus_connected",
        "aclbus_consumer_pending",
    } <= exported


def test_every_rule_queries_exported_metrics(exported: set[str]) -> None:
    known = exported | recorded() | PROMETHEUS_OWN
    assert unknown(rule_expressions(), known) == {}


def test_every_dashboard_query_reads_exported_metrics(exported: set[str]) -> None:
    known = exported | recorded() | PROMETHEUS_OWN
    found = list(dashboard_expressions())
    assert len(found) > 20, "the dashboard has fewer queries than its panels need"
    assert unknown(iter(found), known) == {}
