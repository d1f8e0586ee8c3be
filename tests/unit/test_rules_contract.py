"""The alert rules keep the contract of docs/design.md and are fully tested.

promtool checks syntax and behaviour; these checks cover what it cannot know:
that every alert named in the design exists with the labels and annotations
Alertmanager routing and the runbooks rely on, and that rules_test.yml really
has a firing and a must-not-fire case for each alert.
"""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from tests.support.artifacts import (
    ALERT_ADDITIONS,
    DESIGN,
    OPERATIONS,
    RULES,
    RULES_TEST,
    RUNBOOKS,
    Json,
    alert_rules,
    design_alert_names,
    known_metric_names,
    load_yaml,
)
from tests.support.promql import metric_names

RUNBOOK_BASE = "https://vdi-broker.invalid/docs/runbooks.md#"
SEVERITIES = frozenset({"critical", "warning", "info"})
ALWAYS_FIRING = frozenset({"Watchdog"})

ALERTS = sorted(design_alert_names(DESIGN.read_text(encoding="utf-8")) | ALERT_ADDITIONS)


def runbook_anchors() -> set[str]:
    """GitHub-style anchors of the runbook's headings."""
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", RUNBOOKS.read_text(encoding="utf-8"), re.M):
        anchor = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(anchor)
    return anchors


def rules_by_alert() -> dict[str, list[Json]]:
    grouped: dict[str, list[Json]] = defaultdict(list)
    for rule in alert_rules():
        grouped[rule["alert"]].append(rule)
    return grouped


def test_rules_define_exactly_the_alerts_of_the_design() -> None:
    """The design's alerts and the documented additions, no others."""
    assert set(rules_by_alert()) == set(ALERTS)
    operations = OPERATIONS.read_text(encoding="utf-8")
    assert all(f"`{alert}`" in operations for alert in ALERT_ADDITIONS)


@pytest.mark.parametrize("alert", ALERTS)
def test_alert_has_severity_annotations_and_runbook(alert: str) -> None:
    anchors = runbook_anchors()
    for rule in rules_by_alert()[alert]:
        labels, annotations = rule["labels"], rule["annotations"]
        assert labels["severity"] in SEVERITIES
        assert annotations["summary"].strip()
        assert annotations["description"].strip()
        assert annotations["runbook_url"] == RUNBOOK_BASE + alert.lower()
        assert alert.lower() in anchors


def test_severities_follow_the_design() -> None:
    grouped = rules_by_alert()

    def severity(alert: str) -> set[str]:
        return {rule["labels"]["severity"] for rule in grouped[alert]}

    assert severity("VdiDepartmentLimitReached") == {"info"}
    assert severity("VdiBrokerDown") == {"critical"}
    assert severity("VdiHostNotReporting") == {"critical"}
    assert severity("VdiPoolCapacityExhausted") == {"critical"}
    assert severity("VdiPoolCapacityLow") == {"warning"}
    assert [rule["expr"] for rule in grouped["Watchdog"]] == ["vector(1)"]


def test_broker_series_are_selected_by_the_broker_job() -> None:
    for rule in alert_rules():
        expr = rule["expr"]
        for match in re.finditer(r"\b(vdi_[a-z0-9_]+|up)\b(\{[^}]*\})?", expr):
            assert match.group(2) and 'job="vdi-broker"' in match.group(2), (
                rule["alert"],
                match.group(0),
            )


def test_rules_use_only_exported_metrics() -> None:
    used = set().union(*(metric_names(rule["expr"]) for rule in alert_rules()))
    assert used <= known_metric_names(), sorted(used - known_metric_names())


def test_for_is_a_plain_key_the_end_to_end_test_can_shorten() -> None:
    text = RULES.read_text(encoding="utf-8")
    assert not re.search(r"^\s*[\w-]+:\s*[&*]\w", text, re.M), "no YAML anchors or aliases"
    for rule in alert_rules():
        if rule["alert"] in ALWAYS_FIRING:
            continue
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]


def test_rules_test_fires_and_holds_back_every_alert() -> None:
    document = load_yaml(RULES_TEST)
    assert document["rule_files"] == ["rules.yml"]
    firing: set[str] = set()
    silent: set[str] = set()
    for case in document["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
            for expected in check["exp_alerts"]:
                assert expected["exp_labels"]["severity"] in SEVERITIES
                assert set(expected["exp_annotations"]) == {
                    "summary",
                    "description",
                    "runbook_url",
                }
    assert firing == set(ALERTS)
    assert silent == set(ALERTS) - ALWAYS_FIRING
