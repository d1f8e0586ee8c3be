"""Build the Grafana dashboards of vdi-broker (vdi-capacity, vdi-hosts, vdi-access).

Why a generator: thirty-odd panels must all use the `datasource` variable, carry
a unit and a description, and de-duplicate database-derived gauges across broker
replicas the same way. Writing that once here keeps the JSON consistent; the
JSON files next to this script are what Grafana loads, and a test checks that
they equal this script's output.

    python dashboards/grafana/generate.py          # rewrite the JSON files
    python dashboards/grafana/generate.py --check  # exit 1 if they are stale
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Json = dict[str, Any]

HERE = Path(__file__).resolve().parent
DATASOURCE: Json = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24

# Label selectors. Gauges from the database are exported by every broker replica
# alike, so panels take `max by (...)` over them; event counters are summed.
BROKER = 'job="vdi-broker"'
POOL = f'{BROKER}, pool=~"$pool"'
HOST = f'{BROKER}, host=~"$host"'
AGENT = 'job="vdi-agent", host=~"$host"'

SESSIONS_BY_POOL = f"sum by (pool) (max by (pool, state, work_mode) (vdi_sessions{{{POOL}}}))"
# The broker exports a utilisation of 1 for a pool without usable capacity. For
# a pool with desktops (all on hosts that are down or draining) that is right:
# nobody gets one. A pool without any desktop yet, or switched off with a
# licence limit of 0, is not full (the capacity alerts leave it alone too), and
# must not show as a red 100% on a fresh install; it is left out.
UTILISATION = (
    f"max by (pool) (vdi_pool_utilization_ratio{{{POOL}}})"
    " unless on (pool)"
    f" (sum by (pool) (max by (pool, power_state) (vdi_pool_desktops{{{POOL}}})) == 0)"
    f" unless on (pool) (max by (pool) (vdi_pool_max_sessions{{{POOL}}}) == 0)"
)
LOGIN_FAILURES = 'result=~"invalid_credentials|locked|rate_limited|replay"'
REFUSALS = 'result!~"assigned|reconnected|pending"'


def thresholds(*steps: tuple[float | None, str]) -> Json:
    """Absolute threshold steps; the first step's value is None (the base colour)."""
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for value, color in steps],
    }


UTILISATION_STEPS = thresholds((None, "green"), (0.8, "orange"), (0.95, "red"))


def target(expr: str, legend: str = "", *, table: bool = False, heatmap: bool = False) -> Json:
    """One Prometheus query; table targets are instant queries for table panels."""
    query: Json = {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not table,
        "instant": table,
    }
    if table:
        query["format"] = "table"
    elif heatmap:
        query["format"] = "heatmap"
    return query


def dashed(pattern: str) -> Json:
    """Override drawing series whose name matches `pattern` as a dashed line (limits)."""
    return {
        "matcher": {"id": "byRegexp", "options": pattern},
        "properties": [
            {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
            {"id": "custom.fillOpacity", "value": 0},
            {"id": "custom.stacking", "value": {"mode": "none", "group": "A"}},
        ],
    }


def timeseries(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[Json],
    *,
    width: int = 12,
    stacked: bool = False,
    bars: bool = False,
    steps: Json | None = None,
    overrides: Sequence[Json] = (),
    max_value: float | None = None,
) -> Json:
    """A time series panel; with `steps` the thresholds are drawn as dashed lines."""
    defaults: Json = {
        "unit": unit,
        "min": 0,
        "color": {"mode": "palette-classic"},
        "custom": {
            "drawStyle": "bars" if bars else "line",
            "lineWidth": 1,
            "fillOpacity": 30 if stacked or bars else 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
            "thresholdsStyle": {"mode": "dashed" if steps else "off"},
        },
        "thresholds": steps or thresholds((None, "green")),
    }
    if max_value is not None:
        defaults["max"] = max_value
    return _panel(
        "timeseries",
        title,
        description,
        targets,
        width=width,
        defaults=defaults,
        overrides=overrides,
        options={
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    )


def stat(
    title: str,
    description: str,
    unit: str,
    targets: Sequence[Json],
    *,
    steps: Json,
    width: int = 8,
    overrides: Sequence[Json] = (),
) -> Json:
    """Current values as big numbers, coloured by `steps`."""
    return _panel(
        "stat",
        title,
        description,
        targets,
        width=width,
        defaults={"unit": unit, "color": {"mode": "thresholds"}, "thresholds": steps},
        overrides=overrides,
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "none",
            "textMode": "value_and_name",
            "justifyMode": "auto",
            "orientation": "auto",
        },
    )


def gauge(title: str, description: str, targets: Sequence[Json], *, steps: Json) -> Json:
    """Ratios 0..1 as gauges with the threshold colours on the rim."""
    return _panel(
        "gauge",
        title,
        description,
        targets,
        width=8,
        defaults={
            "unit": "percentunit",
            "min": 0,
            "max": 1,
            "color": {"mode": "thresholds"},
            "thresholds": steps,
        },
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showThresholdMarkers": True,
            "showThresholdLabels": False,
        },
    )


def state_timeline(
    title: str, description: str, targets: Sequence[Json], states: Sequence[tuple[str, str]]
) -> Json:
    """Discrete states over time; `states[i]` is the (text, colour) for value i."""
    mapping = {
        str(value): {"text": text, "color": color, "index": value}
        for value, (text, color) in enumerate(states)
    }
    return _panel(
        "state-timeline",
        title,
        description,
        targets,
        width=8,
        defaults={
            "unit": "none",
            "color": {"mode": "thresholds"},
            "thresholds": thresholds((None, "text")),
            "mappings": [{"type": "value", "options": mapping}],
            "custom": {"fillOpacity": 80, "lineWidth": 0},
        },
        options={
            "mergeValues": True,
            "showValue": "never",
            "alignValue": "left",
            "rowHeight": 0.9,
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "single", "sort": "none"},
        },
    )


def table(title: str, description: str, targets: Sequence[Json], rename: dict[str, str]) -> Json:
    """Instant queries merged into one table; `rename` gives the column headers."""
    panel = _panel(
        "table",
        title,
        description,
        targets,
        width=12,
        defaults={"unit": "short", "custom": {"align": "auto"}},
        options={"showHeader": True, "cellHeight": "sm"},
    )
    panel["transformations"] = [
        {"id": "merge", "options": {}},
        {
            "id": "organize",
            "options": {"excludeByName": {"Time": True}, "renameByName": rename},
        },
    ]
    return panel


def heatmap(title: str, description: str, target_: Json, *, y_unit: str, cell_unit: str) -> Json:
    """Pre-bucketed histogram (format heatmap), one row per `le` bucket."""
    return _panel(
        "heatmap",
        title,
        description,
        [target_],
        width=12,
        defaults={"unit": cell_unit, "custom": {"scaleDistribution": {"type": "linear"}}},
        options={
            "calculate": False,
            "yAxis": {"axisPlacement": "left", "unit": y_unit},
            "rowsFrame": {"layout": "auto"},
            "cellValues": {"unit": cell_unit},
            "color": {"mode": "scheme", "scheme": "Oranges", "scale": "exponential"},
            "showValue": "never",
            "tooltip": {"show": True, "yHistogram": True},
            "legend": {"show": True},
        },
    )


def _panel(
    kind: str,
    title: str,
    description: str,
    targets: Sequence[Json],
    *,
    width: int,
    defaults: Json,
    options: Json,
    overrides: Sequence[Json] = (),
) -> Json:
    refs = "ABCDEFGH"
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": width, "x": 0, "y": 0},
        "fieldConfig": {"defaults": defaults, "overrides": list(overrides)},
        "options": options,
        "targets": [{**t, "refId": refs[i]} for i, t in enumerate(targets)],
    }


def query_variable(name: str, label: str, query: str) -> Json:
    """A multi-value label_values() variable with an All option matching everything."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "regex": "",
        "sort": 1,
        "hide": 0,
    }


DATASOURCE_VARIABLE: Json = {
    "name": "datasource",
    "label": "Data source",
    "type": "datasource",
    "query": "prometheus",
    "current": {},
    "options": [],
    "refresh": 1,
    "regex": "",
    "hide": 0,
}


def dashboard(
    uid: str, title: str, description: str, variables: Sequence[Json], panels: Sequence[Json]
) -> Json:
    """Wrap panels: ids in order, rows filled left to right, fixed settings."""
    placed: list[Json] = []
    x = y = row_height = 0
    for number, panel in enumerate(panels, start=1):
        width, height = panel["gridPos"]["w"], panel["gridPos"]["h"]
        if x + width > GRID_WIDTH:
            x, y = 0, y + row_height
            row_height = 0
        placed.append({"id": number, **panel, "gridPos": {"h": height, "w": width, "x": x, "y": y}})
        x += width
        row_height = max(row_height, height)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["vdi"],
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "title": "VDI dashboards",
                "tags": ["vdi"],
                "asDropdown": False,
                "includeVars": False,
                "keepTime": True,
            }
        ],
        "templating": {"list": [DATASOURCE_VARIABLE, *variables]},
        "panels": placed,
    }


def capacity() -> Json:
    """Sessions against capacity and licences, refusals, launch times: is there room?"""
    host_up = f"max by (host) (vdi_host_up{{{BROKER}}})"
    in_state = 'max by (host) (vdi_host_state{{{0}, state="{1}"}}) == 1'
    down = f"({host_up} == 0) unless on (host) ({in_state.format(BROKER, 'maintenance')})"
    launch_buckets = f"vdi_session_launch_duration_seconds_bucket{{{POOL}}}"
    decision = "sum by (le) (rate(vdi_assignment_duration_seconds_bucket{{{0}}}[$__rate_interval]))"
    return dashboard(
        "vdi-capacity",
        "VDI capacity",
        "Sessions, usable capacity, licences and refusals per pool.",
        [query_variable("pool", "Pool", f"label_values(vdi_pool_max_sessions{{{BROKER}}}, pool)")],
        [
            stat(
                "Hosts: up, draining, in maintenance, down",
                "Up: hosts whose agent reports are fresh. Draining and maintenance are the "
                "states an admin set (vdi-broker host drain). Down: hosts that stopped "
                "reporting without being in maintenance (alert VdiHostNotReporting).",
                "short",
                [
                    target(f"count({host_up} == 1) or vector(0)", "Up"),
                    target(
                        f"count({in_state.format(BROKER, 'draining')}) or vector(0)", "Draining"
                    ),
                    target(
                        f"count({in_state.format(BROKER, 'maintenance')}) or vector(0)",
                        "Maintenance",
                    ),
                    target(f"count({down}) or vector(0)", "Down"),
                ],
                steps=thresholds((None, "blue")),
                overrides=[
                    {
                        "matcher": {"id": "byName", "options": "Down"},
                        "properties": [
                            {
                                "id": "thresholds",
                                "value": thresholds((None, "green"), (1, "red")),
                            }
                        ],
                    }
                ],
            ),
            gauge(
                "Pool utilisation now",
                "Sessions divided by the capacity usable now (licence limit, bounded by "
                "desktops on active, reporting hosts). Orange from 80% (VdiPoolCapacityLow), "
                "red from 95% (VdiPoolCapacityExhausted, or VdiLicenceLimitReached where "
                "the licence limit binds). A pool whose hosts are all down or draining "
                "shows 100%; a pool without desktops yet, or with a licence limit of 0, is "
                "not shown.",
                [target(UTILISATION, "{{pool}}")],
                steps=UTILISATION_STEPS,
            ),
            stat(
                "Headroom if the largest host fails",
                "Free seats that would remain if the pool's largest host failed now. "
                "Below zero, that many current sessions would find no desktop "
                "(VdiPoolNoHostRedundancy).",
                "short",
                [
                    target(
                        f"max by (pool) (vdi_pool_capacity_without_largest_host{{{POOL}}})"
                        f" - on (pool) {SESSIONS_BY_POOL}",
                        "{{pool}}",
                    )
                ],
                steps=thresholds((None, "red"), (0, "orange"), (1, "green")),
            ),
            timeseries(
                "Sessions vs usable capacity",
                "Sessions of every state (pending, active, disconnected) per pool against "
                "the capacity usable now (dashed). Capacity drops when hosts go down or "
                "are drained.",
                "short",
                [
                    target(SESSIONS_BY_POOL, "{{pool}} sessions"),
                    target(
                        f"max by (pool) (vdi_pool_capacity_sessions{{{POOL}}})",
                        "{{pool}} usable capacity",
                    ),
                ],
                overrides=[dashed("/usable capacity$/")],
            ),
            timeseries(
                "Pool utilisation",
                "Sessions divided by usable capacity over time; dashed lines at 80% and 95% "
                "are the alert thresholds. Pools without desktops yet, or with a licence "
                "limit of 0, are not shown.",
                "percentunit",
                [target(UTILISATION, "{{pool}}")],
                steps=UTILISATION_STEPS,
            ),
            timeseries(
                "Licences in use vs licence limit",
                "Each session holds one licence of its pool; the dashed line is the pool's "
                "licence limit (max_sessions). At the limit staff are refused with "
                "licence_limit (VdiLicenceLimitReached).",
                "short",
                [
                    target(SESSIONS_BY_POOL, "{{pool}} in use"),
                    target(
                        f"max by (pool) (vdi_pool_max_sessions{{{POOL}}})", "{{pool}} licence limit"
                    ),
                ],
                overrides=[dashed("/licence limit$/")],
            ),
            timeseries(
                "Refusals by reason",
                "Session requests the broker refused, per minute, by refusal code "
                "(capacity_full, licence_limit, department_quota, outside_schedule, "
                "not_entitled, host_unavailable).",
                "cpm",
                [
                    target(
                        f"sum by (result) (rate(vdi_assignments_total{{{POOL}, {REFUSALS}}}"
                        "[$__rate_interval])) * 60",
                        "{{result}}",
                    )
                ],
                stacked=True,
                bars=True,
            ),
            heatmap(
                "Session launch duration",
                "Time from a staff member's request to a running desktop; each cell's "
                "colour is the launches per minute that took that long, around that time. "
                "Launches that must boot a desktop take longer; launches that never finish "
                "(start_timeout) count with the time they waited.",
                # A rate, not increase(): $__rate_interval is wider than the step
                # (four scrapes at least), so increase() counted every launch in
                # several cells, more the wider Grafana made the window.
                target(
                    f"sum by (le) (rate({launch_buckets}[$__rate_interval])) * 60",
                    "{{le}}",
                    heatmap=True,
                ),
                y_unit="s",
                cell_unit="cpm",
            ),
            timeseries(
                "Session launch time, 90th percentile",
                "Nine in ten launches per pool finish within this time; the dashed line at "
                "120 s is the VdiSessionLaunchSlow threshold.",
                "s",
                [
                    target(
                        "histogram_quantile(0.9, sum by (pool, le) "
                        f"(rate({launch_buckets}[$__rate_interval])))",
                        "{{pool}}",
                    )
                ],
                steps=thresholds((None, "green"), (120, "orange")),
            ),
            table(
                "Department remote work vs limit",
                "Staff of each department working remotely now (home work; field workers do "
                "not count) and the department's limit for minimum presence in the office.",
                [
                    target(
                        f"max by (department) (vdi_department_remote_sessions{{{BROKER}}})",
                        table=True,
                    ),
                    target(
                        f"max by (department) (vdi_department_remote_limit{{{BROKER}}})",
                        table=True,
                    ),
                ],
                {"department": "Department", "Value #A": "Working remotely", "Value #B": "Limit"},
            ),
            timeseries(
                "Desktops by power state",
                "Desktops of the selected pools by power state as the hypervisors report it. "
                "The dashed line counts those out of service, which cannot be handed out: "
                "their console did not answer the agent's last probe, they have no console "
                "address, or their reset failed (VdiDesktopsOutOfService).",
                "short",
                [
                    target(
                        "sum by (power_state) (max by (pool, power_state) "
                        f"(vdi_pool_desktops{{{POOL}}}))",
                        "{{power_state}}",
                    ),
                    target(
                        f"sum(max by (pool) (vdi_pool_desktops_out_of_service{{{POOL}}}))",
                        "out of service",
                    ),
                ],
                stacked=True,
                overrides=[dashed("out of service")],
            ),
            timeseries(
                "Broker decision time",
                "How long the broker takes to decide on a session request (placement and "
                "policy checks), median and 99th percentile over all replicas.",
                "s",
                [
                    target(f"histogram_quantile(0.5, {decision.format(BROKER)})", "median"),
                    target(
                        f"histogram_quantile(0.99, {decision.format(BROKER)})", "99th percentile"
                    ),
                ],
            ),
        ],
    )


def hosts() -> Json:
    """Per-host load, probes and report freshness: which host hurts, and why?"""
    per_host = "max by (host) ({0}{{{1}}})"
    probes = "max by (host) (rate({0}{{{1}}}[$__rate_interval]))"
    return dashboard(
        "vdi-hosts",
        "VDI hosts",
        "Load, desktop probes and agent health per virtualisation host.",
        [query_variable("host", "Host", f"label_values(vdi_host_info{{{BROKER}}}, host)")],
        [
            timeseries(
                "Load index",
                "The placement score of each host, 0 to 100%: the highest of its components "
                "plus a tenth of the others. The dashed line at 90% is VdiHostOverloaded. "
                "A host without session capacity (no desktops yet) shows 100%: it takes "
                "no session, but raises no alert.",
                "percentunit",
                [target(per_host.format("vdi_host_load_index_ratio", HOST), "{{host}}")],
                steps=thresholds((None, "green"), (0.9, "red")),
                max_value=1,
            ),
            timeseries(
                "Load index components",
                "The parts of the load index: cpu, memory, sessions (of capacity) and logons "
                "(desktops starting), each 0 to 100%.",
                "percentunit",
                [
                    target(
                        f"max by (host, component) (vdi_host_load_component_ratio{{{HOST}}})",
                        "{{host}} {{component}}",
                    )
                ],
                max_value=1,
            ),
            timeseries(
                "CPU utilisation",
                "Share of the host's CPU time in use, as the agent measures it.",
                "percentunit",
                [target(per_host.format("vdi_host_cpu_utilization_ratio", HOST), "{{host}}")],
                width=8,
                max_value=1,
            ),
            timeseries(
                "Load per CPU",
                "One-minute load average divided by the number of CPUs; above 1 processes "
                "wait for a CPU.",
                "short",
                [
                    target(
                        f"{per_host.format('vdi_host_load1', HOST)}"
                        f" / {per_host.format('vdi_host_cpus', HOST)}",
                        "{{host}}",
                    )
                ],
                width=8,
            ),
            timeseries(
                "Memory available",
                "Memory still available for desktops, as a share of the host's total memory.",
                "percentunit",
                [
                    target(
                        f"{per_host.format('vdi_host_memory_available_bytes', HOST)}"
                        f" / {per_host.format('vdi_host_memory_total_bytes', HOST)}",
                        "{{host}}",
                    )
                ],
                width=8,
                max_value=1,
            ),
            timeseries(
                "Pressure (PSI some, avg10)",
                "Share of the last ten seconds in which some task waited for CPU, memory "
                "or I/O. Rising pressure is felt by staff as a sluggish desktop.",
                "percentunit",
                [
                    target(
                        f"max by (host, resource) (vdi_host_pressure_ratio{{{HOST}}})",
                        "{{host}} {{resource}}",
                    )
                ],
                max_value=1,
            ),
            timeseries(
                "Sessions by state",
                "Sessions on each host by state (pending, active, disconnected); the dashed "
                "line is the host's session capacity.",
                "short",
                [
                    target(
                        f"max by (host, state) (vdi_host_sessions{{{HOST}}})", "{{host}} {{state}}"
                    ),
                    target(per_host.format("vdi_host_session_capacity", HOST), "{{host}} capacity"),
                ],
                overrides=[dashed("/capacity$/")],
            ),
            timeseries(
                "Desktop probe latency",
                "Mean time a desktop's console port (RDP/VNC) took to answer the agent's "
                "probe in its last round.",
                "s",
                [target(per_host.format("vdi_host_probe_latency_seconds", HOST), "{{host}}")],
                width=8,
            ),
            timeseries(
                "Desktop probe timeouts",
                "Probes of desktop console ports that got no answer, per minute.",
                "cpm",
                [
                    target(
                        f"{probes.format('vdi_host_probe_timeouts_total', HOST)} * 60", "{{host}}"
                    )
                ],
                width=8,
            ),
            timeseries(
                "Share of probes timing out",
                "Timed-out probes divided by all probes; the dashed line at 5% is "
                "VdiDesktopProbeTimeouts.",
                "percentunit",
                [
                    target(
                        f"{probes.format('vdi_host_probe_timeouts_total', HOST)}"
                        f" / {probes.format('vdi_host_probes_total', HOST)}",
                        "{{host}}",
                    )
                ],
                width=8,
                steps=thresholds((None, "green"), (0.05, "red")),
            ),
            timeseries(
                "Report age",
                "Seconds since the host's agent last reported to the broker. The broker "
                "marks a host down when this exceeds a few report intervals. A host whose "
                "agent never reported has no line here; Host up shows it as down.",
                "s",
                [
                    target(
                        "time() - "
                        + per_host.format("vdi_host_last_report_timestamp_seconds", HOST),
                        "{{host}}",
                    )
                ],
                width=8,
            ),
            state_timeline(
                "Host up",
                "Whether the broker receives fresh reports from the host's agent.",
                [target(per_host.format("vdi_host_up", HOST), "{{host}}")],
                [("down", "red"), ("up", "green")],
            ),
            state_timeline(
                "Host state",
                "The state an admin set: active (takes sessions), draining (keeps its "
                "sessions, takes no new ones) or maintenance (expected to be silent).",
                [
                    target(
                        f'max by (host) (vdi_host_state{{{HOST}, state="draining"}})'
                        f' + 2 * max by (host) (vdi_host_state{{{HOST}, state="maintenance"}})',
                        "{{host}}",
                    )
                ],
                [("active", "green"), ("draining", "orange"), ("maintenance", "blue")],
            ),
            state_timeline(
                "Agent collectors",
                "Whether each collector of the host's vdi-agent (cpu, memory, probes, ...) "
                "succeeded in its last run; scraped from the agent itself (job vdi-agent).",
                [
                    target(
                        f"min by (host, collector) (vdi_agent_collector_success{{{AGENT}}})",
                        "{{host}} {{collector}}",
                    )
                ],
                [("failed", "red"), ("ok", "green")],
            ),
            timeseries(
                "Agent action results undelivered",
                "Results of power actions (start, stop, reset) the agent has carried out "
                "but the broker has not yet acknowledged. Reports are not queued: each cycle "
                "sends a fresh one, so an outage shows under Agent report failures.",
                "short",
                [target(per_host.format("vdi_agent_report_backlog", AGENT), "{{host}}")],
                width=8,
            ),
            timeseries(
                "Agent report failures",
                "Reports the agent failed to send to the broker, per minute.",
                "cpm",
                [
                    target(
                        "sum by (host) (rate(vdi_agent_reports_failed_total"
                        f"{{{AGENT}}}[$__rate_interval])) * 60",
                        "{{host}}",
                    )
                ],
                width=8,
            ),
        ],
    )


def access() -> Json:
    """Logins and the SSH gateway: who gets in, who is kept out, how much flows."""

    def logins_per_minute(selector: str) -> str:
        return f"sum(rate(vdi_logins_total{{{BROKER}, {selector}}}[$__rate_interval])) * 60"

    return dashboard(
        "vdi-access",
        "VDI access and security",
        "Logins by result, logins refused for locked accounts, TOTP replays and the SSH "
        "tunnel gateway.",
        [],
        [
            timeseries(
                "Logins by result",
                "Login attempts per minute over all broker replicas by result: success, "
                "invalid_credentials, locked, rate_limited, replay, enrollment_required.",
                "cpm",
                [
                    target(
                        "sum by (result) (rate(vdi_logins_total"
                        f"{{{BROKER}}}[$__rate_interval])) * 60",
                        "{{result}}",
                    )
                ],
                stacked=True,
            ),
            timeseries(
                "Failed logins",
                "Failed login attempts per minute (wrong password or code, locked, rate "
                "limited, replayed code). The dashed line at 20 per minute is "
                "VdiLoginFailuresHigh.",
                "cpm",
                [target(logins_per_minute(LOGIN_FAILURES), "failed")],
                steps=thresholds((None, "green"), (20, "red")),
            ),
            timeseries(
                "Logins refused: account locked",
                "Login attempts per minute refused because the account was locked at the "
                "time (result locked): for a while after repeated failures, or by an admin. "
                "It counts refused attempts, not lock-outs: one locked account tried again "
                "and again counts every try. A steady stream usually means someone keeps "
                "guessing passwords; the audit log names the accounts.",
                "cpm",
                [target(logins_per_minute('result="locked"'), "locked")],
                width=8,
            ),
            timeseries(
                "TOTP code replays",
                "Logins with a TOTP code that was already used, per minute. A replay means "
                "the code was seen by someone else, or a client sent it twice.",
                "cpm",
                [target(logins_per_minute('result="replay"'), "replay")],
                width=8,
            ),
            timeseries(
                "Gateway auth failures",
                "SSH connections to the tunnel gateway refused for a bad or expired ticket, "
                "per minute.",
                "cpm",
                [
                    target(
                        "sum(rate(vdi_gateway_auth_failures_total"
                        f"{{{BROKER}}}[$__rate_interval])) * 60",
                        "auth failures",
                    )
                ],
                width=8,
            ),
            timeseries(
                "Gateway tunnels",
                "Open SSH tunnels to desktops, stacked per broker replica (each replica "
                "runs its own gateway).",
                "short",
                [target(f"sum by (instance) (vdi_gateway_tunnels{{{BROKER}}})", "{{instance}}")],
                stacked=True,
            ),
            timeseries(
                "Gateway traffic",
                "Bytes per second through the tunnel gateway, both directions, over all replicas.",
                "Bps",
                [
                    target(
                        "sum by (direction) (rate(vdi_gateway_bytes_total"
                        f"{{{BROKER}}}[$__rate_interval]))",
                        "{{direction}}",
                    )
                ],
            ),
        ],
    )


def render_all() -> dict[str, str]:
    """File name to JSON text of every dashboard, exactly as committed."""
    return {
        f"{board['uid']}.json": json.dumps(board, indent=2, ensure_ascii=False) + "\n"
        for board in (capacity(), hosts(), access())
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if the JSON files are stale")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render_all().items():
        path = HERE / name
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print("stale, run dashboards/grafana/generate.py:", ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
