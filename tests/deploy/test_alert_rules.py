"""deploy/prometheus: the rules and the configuration pass promtool, and each alert is tested.

``promtool test rules`` runs each file of deploy/prometheus/tests (a case where the alert
fires, with its exact labels and annotations, and one just under its threshold where it must
not). Here also: every alert has those cases, a ``for:``, a severity and the annotations an
operator needs, and its runbook link lands on a heading of docs/operations.md.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))
SEVERITIES = {"critical", "warning"}


def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=60, check=False
    )


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def heading_anchors(markdown: str) -> set[str]:
    """The anchors Python-Markdown's toc gives the headings (lower case, words joined by -)."""
    anchors: set[str] = set()
    for title in re.findall(r"^#+ (.+)$", markdown, flags=re.M):
        slug = re.sub(r"[^\w\s-]", "", title.replace("`", "")).strip().lower()
        anchors.add(re.sub(r"[-\s]+", "-", slug))
    return anchors


def test_promtool_checks_the_rules(promtool: Path) -> None:
    result = run(promtool, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_checks_the_example_configuration(promtool: Path) -> None:
    result = run(promtool, "check", "config", DEPLOY / "prometheus" / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alerts.yml" in result.stdout  # the rule files were loaded and checked too


@pytest.mark.parametrize("tests", RULE_TESTS, ids=[p.stem for p in RULE_TESTS])
def test_promtool_unit_tests_pass(promtool: Path, tests: Path) -> None:
    result = run(promtool, "test", "rules", tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_can_fail(promtool: Path, tmp_path: Path) -> None:
    # The delivery-failure threshold moved just above the tested 0.011 %: the case that
    # fires must fail, or the unit tests prove nothing.
    moved = RULES.read_text().replace("ratio_rate5m > 0.0001", "ratio_rate5m > 0.00012")
    assert moved != RULES.read_text()
    (tmp_path / "alerts.yml").write_text(moved)
    (tmp_path / "tests").mkdir()
    case = tmp_path / "tests" / "delivery_failure_rate.yml"
    case.write_text((DEPLOY / "prometheus" / "tests" / "delivery_failure_rate.yml").read_text())
    result = run(promtool, "test", "rules", case)
    assert result.returncode != 0
    assert "AclbusDeliveryFailureRate" in result.stdout + result.stderr


def test_every_alert_has_a_unit_test_where_it_fires_and_one_where_it_does_not() -> None:
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == 7, names
    firing: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        document = yaml.safe_load(path.read_text())
        assert document["rule_files"] == ["../alerts.yml"], path
        for case in document["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check["exp_alerts"] else silent).add(check["alertname"])
    assert not set(names) - firing, f"no case where these fire: {set(names) - firing}"
    assert not set(names) - silent, f"no case where these stay silent: {set(names) - silent}"


def test_every_alert_has_a_window_a_severity_and_a_runbook() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    anchors = heading_anchors(operations)
    for rule in alerts():
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), f"{name}: no for:"
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations["summary"], name
        assert annotations["description"], name
        page, _, anchor = annotations["runbook_url"].partition("#")
        assert page == "docs/operations.md", name
        assert anchor == name.lower(), name
        assert anchor in anchors, f"{name}: docs/operations.md has no heading #{anchor}"


def test_heading_anchors_follow_the_docs_site() -> None:
    assert heading_anchors("## Alerts\n### AclbusNodeDown\n## A `b` c!\n") == {
        "alerts",
        "aclbusnodedown",
        "a-b-c",
    }
