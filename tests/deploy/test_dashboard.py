"""deploy/grafana/aclbus.json: a Grafana dashboard model that imports anywhere and shows what
operators need (the metric names themselves are test_metric_names.py's)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((ROOT / "deploy" / "grafana" / "aclbus.json").read_text())
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


def panels(items: list[dict[str, Any]] = DASHBOARD["panels"]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def queries() -> str:
    return "\n".join(t["expr"] for p in panels() for t in p.get("targets", []))


def test_the_datasource_is_a_variable() -> None:
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["job"]["datasource"] == DATASOURCE
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert '{job=~"$job"}' in target["expr"], (panel["title"], target["expr"])


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels():
        g = panel["gridPos"]
        assert g["x"] >= 0, panel["title"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_every_panel_the_operators_need_is_there() -> None:
    text = queries()
    for needed in [
        "rate(aclbus_messages_sent_total",  # throughput
        "rate(aclbus_messages_received_total",
        "histogram_quantile(0.5, sum by (le) (rate(aclbus_message_latency_seconds_bucket",
        "histogram_quantile(0.95, sum by (le) (rate(aclbus_message_latency_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(aclbus_message_latency_seconds_bucket",
        "aclbus_handler_duration_seconds_bucket",
        "aclbus_handler_failures_total",  # failures
        "aclbus:delivery_failures:ratio_rate5m",  # failure ratio
        "aclbus_messages_dead_lettered_total",  # DLQ
        "aclbus_consumer_pending",  # backlog
        "aclbus_consumer_ack_pending",  # lag
        "aclbus_messages_retried_total",  # redeliveries
        "aclbus_connected",  # connections
        "aclbus_reconnects_total",
    ]:
        assert needed in text, needed
    for panel in panels():
        if panel["type"] != "row":
            assert panel.get("description"), panel["title"]
