"""Lint the Grafana dashboards: no Grafana binary is available, so check the JSON.

What Grafana would not complain about but operators would: a panel bound to a
fixed datasource, a rate over a hard-coded window, a missing unit or
description, a metric the broker does not export, a uid that changed and broke
every bookmark.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
from typing import Any

import pytest

from tests.support.artifacts import (
    DASHBOARDS,
    GRAFANA_DIR,
    RUNBOOKS,
    Json,
    known_metric_names,
    load_dashboard,
    load_yaml,
    panels,
    variable_metric,
)
from tests.support.promql import call_arguments, metric_names, range_selectors

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE_FUNCTIONS = frozenset({"rate", "irate", "increase"})
PANEL_TYPES = frozenset({"timeseries", "stat", "gauge", "heatmap", "table", "state-timeline"})
# Unit ids of Grafana's value formats (packages/grafana-data/src/valueFormats) that
# fit this project; a typo would silently render raw numbers.
UNITS = frozenset(
    {"none", "short", "percentunit", "s", "ms", "bytes", "Bps", "reqps", "ops", "cps", "cpm"}
)

board_names = pytest.mark.parametrize("name", sorted(DASHBOARDS))


def query_variables(board: Json) -> list[Json]:
    return [v for v in board["templating"]["list"] if v["type"] == "query"]


def exprs(board: Json) -> list[str]:
    return [t["expr"] for panel in panels(board) for t in panel.get("targets", [])]


@board_names
def test_one_datasource_variable(name: str) -> None:
    variables = load_dashboard(name)["templating"]["list"]
    sources = [v for v in variables if v["type"] == "datasource"]
    assert len(sources) == 1
    assert sources[0]["name"] == "datasource"
    assert sources[0]["query"] == "prometheus"


@board_names
def test_every_panel_target_and_variable_uses_the_datasource_variable(name: str) -> None:
    board = load_dashboard(name)
    for panel in panels(board):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    for variable in query_variables(board):
        assert variable["datasource"] == DATASOURCE, variable["name"]


@board_names
def test_every_panel_has_title_description_and_unit(name: str) -> None:
    for panel in panels(load_dashboard(name)):
        assert panel["type"] in PANEL_TYPES
        assert panel["title"].strip()
        assert panel["description"].strip(), panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"] in UNITS, panel["title"]


@board_names
def test_every_rate_uses_the_rate_interval(name: str) -> None:
    for expr in exprs(load_dashboard(name)):
        for function, argument in call_arguments(expr, RATE_FUNCTIONS):
            assert argument.rstrip().endswith("[$__rate_interval]"), (function, expr)
        assert set(range_selectors(expr)) <= {"$__rate_interval"}, expr


@board_names
def test_stable_uid_and_read_only_settings(name: str) -> None:
    board = load_dashboard(name)
    assert board["uid"] == DASHBOARDS[name]
    assert board["editable"] is False
    assert board["refresh"] == "30s"
    assert 36 <= board["schemaVersion"] <= 41
    assert board["time"]["from"].startswith("now-")
    assert board["title"].startswith("VDI ")


@board_names
def test_panel_ids_unique_and_grid_without_overlap(name: str) -> None:
    board = load_dashboard(name)
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(board):
        grid = panel["gridPos"]
        assert all(isinstance(grid[key], int) for key in ("h", "w", "x", "y")), panel["title"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for cell in itertools.product(
            range(grid["x"], grid["x"] + grid["w"]), range(grid["y"], grid["y"] + grid["h"])
        ):
            assert cell not in cells, f"{panel['title']} overlaps {cells[cell]}"
            cells[cell] = panel["title"]


@board_names
def test_query_variables_are_used_and_offer_all(name: str) -> None:
    board = load_dashboard(name)
    text = "\n".join(exprs(board))
    for variable in query_variables(board):
        assert variable["multi"] is True and variable["includeAll"] is True
        assert variable["allValue"] == ".*"
        variable_metric(variable["query"]["query"])
        assert f'=~"${variable["name"]}"' in text, variable["name"]


def test_capacity_and_hosts_filter_by_pool_and_host() -> None:
    assert [v["name"] for v in query_variables(load_dashboard("vdi-capacity.json"))] == ["pool"]
    assert [v["name"] for v in query_variables(load_dashboard("vdi-hosts.json"))] == ["host"]


@board_names
def test_panels_use_only_exported_metrics(name: str) -> None:
    board = load_dashboard(name)
    used = set().union(*(metric_names(expr) for expr in exprs(board)))
    for variable in query_variables(board):
        used |= metric_names(variable_metric(variable["query"]["query"]))
    assert used
    assert used <= known_metric_names(), sorted(used - known_metric_names())


def test_utilisation_thresholds_are_the_alert_thresholds() -> None:
    board = load_dashboard("vdi-capacity.json")
    gauge = next(p for p in panels(board) if p["title"] == "Pool utilisation now")
    steps = gauge["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [(s["value"], s["color"]) for s in steps] == [
        (None, "green"),
        (0.8, "orange"),
        (0.95, "red"),
    ]


def the_panel_querying(board: str, fragment: str) -> Json:
    """The one panel of `board` whose query contains `fragment`."""
    (panel,) = [
        p for p in panels(load_dashboard(board)) if any(fragment in t["expr"] for t in p["targets"])
    ]
    return panel


def test_the_panel_of_locked_logins_says_it_counts_refused_logins() -> None:
    """vdi_logins_total{result="locked"} counts login attempts refused while an
    account is locked, every retry again; titled "Lockouts" it was read as the
    number of accounts that got locked."""
    panel = the_panel_querying("vdi-access.json", 'result="locked"')
    assert panel["title"] == "Logins refused: account locked"
    assert "not lock-outs" in panel["description"]


def test_the_agent_backlog_panel_says_it_counts_action_results() -> None:
    """vdi_agent_report_backlog counts power-action results not yet acknowledged;
    described as reports held back, it was read as an outage gauge, and it
    stays 0 through an outage."""
    panel = the_panel_querying("vdi-hosts.json", "vdi_agent_report_backlog")
    assert "action results" in panel["title"]
    assert "Reports are not queued" in panel["description"]


# Italic words in the runbooks that are not panel titles.
RUNBOOK_ITALICS_NOT_PANELS = frozenset({"critical", "warning", "info", "Alerts", "VDI capacity"})


def test_panels_the_runbooks_name_exist() -> None:
    """The runbooks name panels in italics (*Failed logins*), possibly wrapped
    over lines or shortened before a parenthesis (*Pressure*): each must still
    be a panel title, so a renamed panel does not leave ops looking for it."""
    text = RUNBOOKS.read_text(encoding="utf-8")
    named = {
        " ".join(span.split())
        for span in re.findall(r"(?<![*\w])\*([^*\s][^*]*?)\*(?![*\w])", text)
    }
    titles = {panel["title"] for name in DASHBOARDS for panel in panels(load_dashboard(name))}
    missing = {
        span
        for span in named - RUNBOOK_ITALICS_NOT_PANELS
        if not any(title == span or title.startswith(f"{span} (") for title in titles)
    }
    assert len(named) > 20
    assert not missing, sorted(missing)


def test_committed_json_is_the_generator_output() -> None:
    spec = importlib.util.spec_from_file_location("generate", GRAFANA_DIR / "generate.py")
    assert spec is not None and spec.loader is not None
    generator: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    rendered: dict[str, str] = generator.render_all()
    assert sorted(rendered) == sorted(DASHBOARDS)
    assert sorted(p.name for p in GRAFANA_DIR.glob("*.json")) == sorted(DASHBOARDS)
    for name, text in rendered.items():
        assert (GRAFANA_DIR / name).read_text(encoding="utf-8") == text, (
            f"{name} is stale: run python dashboards/grafana/generate.py"
        )


def test_provisioning_loads_read_only_dashboards_and_a_fixed_datasource() -> None:
    providers = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "vdi.yml")["providers"]
    assert len(providers) == 1
    provider = providers[0]
    assert provider["type"] == "file"
    assert provider["allowUiUpdates"] is False
    assert provider["options"]["path"].startswith("/")
    sources = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    assert source["uid"] and source["uid"] == source["uid"].strip()
    assert source["jsonData"]["timeInterval"]
