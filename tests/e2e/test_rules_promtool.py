"""The rules, the rule tests, the example config and the dashboard queries, run
through the real `promtool` (Debian package prometheus, see scripts/debian-packages.txt).

Static checks of the YAML cannot tell whether an expression parses or an alert
fires at the right moment; promtool can. One test also breaks a threshold on
purpose to prove that rules_test.yml notices.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.artifacts import (
    DASHBOARDS,
    PROMETHEUS_CONFIG,
    RULES,
    RULES_TEST,
    alert_rules,
    expand_variables,
    load_dashboard,
    load_yaml,
    panel_queries,
    rules_with_short_for,
    variable_metric,
)

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", RULES)
    assert_ok(result)
    assert "SUCCESS" in result.stdout


def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULES_TEST.name, cwd=RULES_TEST.parent)
    assert_ok(result)
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("which", [0, 1], ids=["desktops-bound", "licence-bound"])
def test_rule_unit_tests_notice_a_changed_threshold(tmp_path: Path, which: int) -> None:
    """VdiPoolCapacityLow has a rule for pools bound by their desktops and one
    for pools bound by their licences: each one's threshold is tested."""
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    text = RULES.read_text(encoding="utf-8")
    low = 'vdi_pool_utilization_ratio{job="vdi-broker"}) >= 0.8\n'
    assert text.count(low) == 2
    start = text.index(low, text.index(low) + 1) if which else text.index(low)
    changed = text[:start] + low.replace("0.8", "0.9") + text[start + len(low) :]
    (tmp_path / RULES.name).write_text(changed, encoding="utf-8")
    result = promtool("test", "rules", RULES_TEST.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "VdiPoolCapacityLow" in result.stdout + result.stderr


def test_example_prometheus_config_is_valid_with_the_rules_next_to_it(tmp_path: Path) -> None:
    shutil.copy(PROMETHEUS_CONFIG, tmp_path / "prometheus.yml")
    shutil.copy(RULES, tmp_path / "rules.yml")
    result = promtool("check", "config", tmp_path / "prometheus.yml")
    assert_ok(result)
    config = load_yaml(PROMETHEUS_CONFIG)
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"vdi-broker", "vdi-agent"}
    assert config["rule_files"] == ["rules.yml"]
    assert config["alerting"]["alertmanagers"]


# Agent target address to the `host` label the example's relabelling must give it.
AGENT_HOSTS = {
    "vhost01.example.org:9101": "vhost01",
    "vhost02:9101": "vhost02",
    "10.0.0.5:9101": "10.0.0.5",
    "[::1]:9101": "::1",
    "[2001:db8::5]:9101": "2001:db8::5",
}


def test_example_agent_job_labels_names_short_and_addresses_whole(tmp_path: Path) -> None:
    """The agent job's relabelling, run by promtool's service discovery on the
    example config with more targets (nothing is scraped): a DNS name gives its
    first label, an IP address stays whole (not host="10" or host="["), and a
    `host` label set on the target is kept."""
    config = load_yaml(PROMETHEUS_CONFIG)
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "vdi-agent"]
    committed = [target for group in job["static_configs"] for target in group["targets"]]
    job["static_configs"] = [
        {"targets": committed + list(AGENT_HOSTS)},
        {"targets": ["192.0.2.7:9101"], "labels": {"host": "vhost07"}},
    ]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    result = promtool("check", "service-discovery", "--timeout=2s", path, "vdi-agent")
    assert_ok(result)
    hosts = {t["labels"]["__address__"]: t["labels"].get("host") for t in json.loads(result.stdout)}
    assert hosts == {
        **{target: target.split(".")[0] for target in committed},
        **AGENT_HOSTS,
        "192.0.2.7:9101": "vhost07",
    }
    assert {hosts[target] for target in committed} == {"vhost01", "vhost02"}


def test_rules_with_shortened_for_stay_valid(tmp_path: Path) -> None:
    """The end-to-end test's transformation: every `for` set to a few seconds."""
    rules = rules_with_short_for("2s")
    assert {rule.get("for", "2s") for rule in alert_rules(rules)} == {"2s"}
    short = tmp_path / "rules.yml"
    short.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    assert_ok(promtool("check", "rules", short))


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """Each panel and variable query, variables expanded, as a recording rule."""
    records = []
    for name in sorted(DASHBOARDS):
        exprs = [query.expr for query in panel_queries(name)]
        for variable in load_dashboard(name)["templating"]["list"]:
            if variable["type"] == "query":
                exprs.append(variable_metric(variable["query"]["query"]))
        records += [
            {
                "record": f"dashboard:{name.removesuffix('.json').replace('-', '_')}:{number}",
                "expr": expand_variables(expr),
            }
            for number, expr in enumerate(exprs)
        ]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": records}]}),
        encoding="utf-8",
    )
    result = promtool("check", "rules", path)
    assert_ok(result)
    assert f"SUCCESS: {len(records)} rules found" in result.stdout


def test_the_guides_runbook_step_points_every_alert_at_the_new_place(tmp_path: Path) -> None:
    """operations.md §6 rewrites the runbook links with sed; run that command as
    written on a copy of the rules: every alert's link moves, and promtool still
    takes the file."""
    guide = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    command = re.search(r"(sed -i '[^']+') \\\n\s+/etc/prometheus/vdi/rules.yml", guide)
    assert command, "operations.md no longer shows the runbook step"
    copy = tmp_path / "rules.yml"
    shutil.copy(RULES, copy)
    subprocess.run(f"{command.group(1)} {copy}", shell=True, check=True)
    links = [rule["annotations"]["runbook_url"] for rule in alert_rules(load_yaml(copy))]
    assert links and all(
        link.startswith("https://intranet.example/vdi-broker/docs/runbooks.md#") for link in links
    ), links
    assert_ok(promtool("check", "rules", copy))
