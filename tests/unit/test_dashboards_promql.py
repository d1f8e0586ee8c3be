"""The PromQL reading helpers and the contract parser the dashboard checks rely on.

If these were wrong, the lint tests could pass while a panel uses a metric that
does not exist, so they get their own cases.
"""

from __future__ import annotations

import pytest

from tests.support.artifacts import (
    AGENT_METRIC_NAMES,
    DESIGN,
    design_alert_names,
    design_metric_names,
    expand_variables,
    variable_metric,
)
from tests.support.promql import (
    call_arguments,
    histogram_base,
    metric_names,
    range_selectors,
)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('up{job="vdi-broker"} == 0', {"up"}),
        (
            'sum by (pool) (max by (pool, state, work_mode) (vdi_sessions{job="vdi-broker"}))',
            {"vdi_sessions"},
        ),
        (
            "histogram_quantile(0.9, sum by (pool, le) "
            '(rate(vdi_session_launch_duration_seconds_bucket{pool=~"$pool"}[$__rate_interval])))',
            {"vdi_session_launch_duration_seconds"},
        ),
        (
            "max by (host) (vdi_host_load1) / on (host) group_left max by (host) (vdi_host_cpus)",
            {"vdi_host_load1", "vdi_host_cpus"},
        ),
        ('count(x{result="not_a_metric"} == bool 1) or vector(0)', {"x"}),
        (
            "time() - max(vdi_host_last_report_timestamp_seconds offset 5m) > 1e-3",
            {"vdi_host_last_report_timestamp_seconds"},
        ),
        ("a and b unless c or d", {"a", "b", "c", "d"}),
        (
            "sum(rate(vdi_gateway_bytes_total[${__rate_interval}])) without (instance)",
            {"vdi_gateway_bytes_total"},
        ),
        ("rate(requests_count[5m]) / rate(requests_sum[5m])", {"requests"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_histogram_base_keeps_other_names() -> None:
    assert histogram_base("vdi_assignment_duration_seconds_count") == (
        "vdi_assignment_duration_seconds"
    )
    assert histogram_base("vdi_logins_total") == "vdi_logins_total"


def test_call_arguments_follow_nesting_and_ignore_strings() -> None:
    expr = 'sum(rate(x{a=")"}[1m])) + increase(y[$__rate_interval]) + irate(z[5m])'
    calls = call_arguments(expr, frozenset({"rate", "increase", "irate"}))
    assert calls == [
        ("rate", 'x{a=")"}[1m]'),
        ("increase", "y[$__rate_interval]"),
        ("irate", "z[5m]"),
    ]


def test_range_selectors_include_subqueries() -> None:
    assert range_selectors('max_over_time(rate(x{a="[1h]"}[1m])[30m:5m])') == ["1m", "30m:5m"]


def test_design_lists_are_parsed() -> None:
    text = DESIGN.read_text(encoding="utf-8")
    metrics = design_metric_names(text)
    assert {"vdi_broker_build_info", "vdi_sessions", "vdi_gateway_auth_failures_total"} <= metrics
    assert "vdi_session_launch_duration_seconds" in metrics
    assert not metrics & AGENT_METRIC_NAMES
    alerts = design_alert_names(text)
    assert len(alerts) == 12
    assert {"VdiBrokerDown", "VdiDepartmentLimitReached", "Watchdog"} <= alerts


def test_variables_are_expanded_for_prometheus() -> None:
    expr = 'rate(x{pool=~"$pool", host=~"${host}"}[$__rate_interval])'
    assert expand_variables(expr) == 'rate(x{pool=~".*", host=~".*"}[1m])'
    assert variable_metric('label_values(vdi_host_info{job="vdi-broker"}, host)') == (
        'vdi_host_info{job="vdi-broker"}'
    )
    with pytest.raises(ValueError):
        variable_metric("query_result(up)")
