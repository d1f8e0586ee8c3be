"""The monitoring artifacts under dashboards/ and the contract they must keep.

Why one module: the lint tests, the promtool tests and the end-to-end test with a
live Prometheus all need the same views of the same files: the dashboards'
queries, the alert rules, and the metric and alert names of docs/design.md (the
repository's copy of the contract, so a clean checkout is enough).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

REPO = Path(__file__).resolve().parents[2]
DESIGN = REPO / "docs" / "design.md"
RUNBOOKS = REPO / "docs" / "runbooks.md"
OPERATIONS = REPO / "docs" / "operations.md"
GRAFANA_DIR = REPO / "dashboards" / "grafana"
PROMETHEUS_DIR = REPO / "dashboards" / "prometheus"
RULES = PROMETHEUS_DIR / "rules.yml"
RULES_TEST = PROMETHEUS_DIR / "rules_test.yml"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.example.yml"
ALERTMANAGER_CONFIG = REPO / "dashboards" / "alertmanager.example.yml"

# File name to the uid Grafana links and provisioning rely on.
DASHBOARDS = {
    "vdi-capacity.json": "vdi-capacity",
    "vdi-hosts.json": "vdi-hosts",
    "vdi-access.json": "vdi-access",
}

# vdi-agent's own exposition (job vdi-agent), which docs/design.md describes only
# in words.
AGENT_METRIC_NAMES = frozenset(
    {
        "vdi_agent_build_info",
        "vdi_agent_collector_success",
        "vdi_agent_collector_duration_seconds",
        "vdi_agent_reports_sent_total",
        "vdi_agent_reports_failed_total",
        "vdi_agent_report_backlog",
        "vdi_agent_last_report_success_timestamp_seconds",
        "vdi_agent_desktops",
    }
)

# What the broker exports and alerts on beyond docs/design.md, which stays a copy
# of the shared design; docs/operations.md (section 6) documents each of them.
BROKER_METRIC_ADDITIONS = frozenset({"vdi_pool_desktops_out_of_service"})
ALERT_ADDITIONS = frozenset({"VdiDesktopsOutOfService"})

# Series Prometheus itself adds for every scrape target.
SCRAPE_METRIC_NAMES = frozenset({"up"})

Json = dict[str, Any]


def _section(text: str, start: str, end: str) -> str:
    begin = text.index(start)
    return text[begin : text.index(end, begin)]


def design_metric_names(text: str) -> frozenset[str]:
    """Names in the "Prometheus metrics of the broker" list of docs/design.md."""
    section = _section(text, "Prometheus metrics of the broker", "The agent exposes")
    return frozenset(re.findall(r"`(vdi_[a-z0-9_]+)(?:\{[^}`]*\})?`", section))


def design_alert_names(text: str) -> frozenset[str]:
    """Alert names listed in the "Alert rules" paragraph of docs/design.md."""
    section = _section(text, "Alert rules (in", "Rules use")
    return frozenset(re.findall(r"`((?:Vdi[A-Za-z]+)|Watchdog)`", section))


def known_metric_names() -> frozenset[str]:
    """Every metric name a dashboard or rule may use."""
    design = design_metric_names(DESIGN.read_text(encoding="utf-8"))
    return design | BROKER_METRIC_ADDITIONS | AGENT_METRIC_NAMES | SCRAPE_METRIC_NAMES


def load_yaml(path: Path) -> Json:
    return cast(Json, yaml.safe_load(path.read_text(encoding="utf-8")))


def alert_rules(rules: Json | None = None) -> list[Json]:
    """Every alerting rule (not recording rule) of rules.yml, over all groups."""
    document = rules if rules is not None else load_yaml(RULES)
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def rules_with_short_for(duration: str) -> Json:
    """rules.yml with every alert's `for` set to `duration`, for tests that run
    Prometheus for seconds rather than the minutes the real thresholds need."""
    rules = load_yaml(RULES)
    for rule in alert_rules(rules):
        if "for" in rule:
            rule["for"] = duration
    return rules


def load_dashboard(name: str) -> Json:
    return cast(Json, json.loads((GRAFANA_DIR / name).read_text(encoding="utf-8")))


def panels(board: Json) -> Iterator[Json]:
    """Every panel, including panels nested in collapsed rows."""
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel, as the end-to-end test sends it to Prometheus."""

    dashboard: str
    panel: str
    ref_id: str
    expr: str
    instant: bool


def panel_queries(name: str) -> list[PanelQuery]:
    """Every query of the dashboard file `name`, in panel order."""
    board = load_dashboard(name)
    return [
        PanelQuery(board["uid"], panel["title"], t["refId"], t["expr"], bool(t.get("instant")))
        for panel in panels(board)
        for t in panel.get("targets", [])
    ]


def variable_metric(query: str) -> str:
    """The series selector of a Grafana `label_values(selector, label)` query."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
    if match is None:
        raise ValueError(f"not a label_values(selector, label) query: {query!r}")
    return match.group(1)


def expand_variables(expr: str, rate_interval: str = "1m") -> str:
    """`expr` with dashboard variables replaced so Prometheus can run it as is.

    `$pool`/`$host` become `.*` (the variables' All value) and `$__rate_interval`
    becomes `rate_interval`.
    """
    expr = expr.replace("$__rate_interval", rate_interval)
    return re.sub(r"\$\{?(pool|host)\}?", ".*", expr)
