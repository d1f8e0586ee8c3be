"""What single dashboard panels show for given series, evaluated by the real `promtool`.

The end-to-end monitoring test proves that every panel shows *something* for a
live broker; these cases pin down *what* a panel shows in the situations an
operator reads it for, with the series written out by hand: each case is a
`promtool test rules` file whose `promql_expr_test` runs the panel's query (its
variables expanded as Grafana would) against the input series.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.artifacts import expand_variables, panel_queries

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
BROKER = {"job": "vdi-broker", "instance": "broker1:8000"}
Json = dict[str, Any]


def panel_expr(dashboard: str, title: str, ref_id: str = "A") -> str:
    (query,) = [
        q for q in panel_queries(f"{dashboard}.json") if (q.panel, q.ref_id) == (title, ref_id)
    ]
    return query.expr


def series(name: str, values: str, **labels: str) -> Json:
    inner = ", ".join(f'{k}="{v}"' for k, v in {**BROKER, **labels}.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def run_promtool_test(
    tmp_path: Path, interval: str, input_series: list[Json], tests: list[Json]
) -> subprocess.CompletedProcess[str]:
    """One promtool unit test file without rules: only expression tests."""
    (tmp_path / "none.yml").write_text("groups: []\n", encoding="utf-8")
    document = {
        "rule_files": ["none.yml"],
        "evaluation_interval": interval,
        "tests": [
            {"interval": interval, "input_series": input_series, "promql_expr_test": tests},
        ],
    }
    path = tmp_path / "panel_test.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return subprocess.run(
        [PROMTOOL, "test", "rules", path.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_passes(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


# -- utilisation ------------------------------------------------------------------

# Pool to (licence limit, usable capacity, utilisation as exported, desktops).
# The broker exports a utilisation of 1 wherever the usable capacity is 0.
POOLS = {
    "Finanzen": (10, 4, "0.25", 4),  # in use
    "Archiv": (5, 0, "1", 0),  # just created: no desktops yet
    "Alt": (0, 0, "1", 2),  # switched off: licence limit 0
    "Bauhof": (5, 0, "1", 3),  # every host of the pool down: nobody gets a desktop
}


def pool_series() -> list[Json]:
    out = []
    for pool, (licences, usable, ratio, desktops) in POOLS.items():
        out += [
            series("vdi_pool_max_sessions", f"{licences}x10", pool=pool),
            series("vdi_pool_capacity_sessions", f"{usable}x10", pool=pool),
            series("vdi_pool_utilization_ratio", f"{ratio}x10", pool=pool),
            series("vdi_pool_desktops", f"{desktops}x10", pool=pool, power_state="running"),
            series("vdi_pool_desktops", "0x10", pool=pool, power_state="stopped"),
        ]
    return out


def test_utilisation_panels_show_no_full_pool_for_a_new_or_switched_off_one(
    tmp_path: Path,
) -> None:
    """A pool without desktops yet, or switched off with a licence limit of 0, is
    not full (the capacity alerts leave both alone), so the utilisation panels
    must not paint it red at 100% on a fresh install; a pool whose desktops all
    sit on down hosts is full for its staff and stays at 100%."""
    expected = [
        {"labels": '{pool="Finanzen"}', "value": 0.25},
        {"labels": '{pool="Bauhof"}', "value": 1},
    ]
    tests = [
        {
            "expr": expand_variables(panel_expr("vdi-capacity", title)),
            "eval_time": "5m",
            "exp_samples": expected,
        }
        for title in ("Pool utilisation now", "Pool utilisation")
    ]
    assert_passes(run_promtool_test(tmp_path, "1m", pool_series(), tests))


# -- launch durations -------------------------------------------------------------


def test_launch_heatmap_cells_mean_the_same_at_every_zoom(tmp_path: Path) -> None:
    """Grafana widens $__rate_interval as the time range grows (at least four
    scrapes, else step plus a scrape). A cell must mean the same at every zoom:
    launches per minute, as the panel's unit says. Here two launches a minute
    land in the 20-30 s bucket, scraped every 15 s; a one-hour view (step 15 s,
    $__rate_interval 1m) and a one-day view (step 2m, $__rate_interval 2m15s)
    both show 2 in that bucket, not a count that grows with the window."""
    launches = "0+0.5x200"  # cumulative, half a launch per 15 s scrape
    buckets = [
        series("vdi_session_launch_duration_seconds_bucket", "0x200", pool="Finanzen", le="20.0"),
        series("vdi_session_launch_duration_seconds_bucket", launches, pool="Finanzen", le="30.0"),
        series("vdi_session_launch_duration_seconds_bucket", launches, pool="Finanzen", le="+Inf"),
    ]
    expected = [
        {"labels": '{le="20.0"}', "value": 0},
        {"labels": '{le="30.0"}', "value": 2},
        {"labels": '{le="+Inf"}', "value": 2},
    ]
    expr = panel_expr("vdi-capacity", "Session launch duration")
    tests = [
        {"expr": expand_variables(expr, window), "eval_time": "30m", "exp_samples": expected}
        for window in ("1m", "2m15s")
    ]
    assert_passes(run_promtool_test(tmp_path, "15s", buckets, tests))
