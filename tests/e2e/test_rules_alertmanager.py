"""The example Alertmanager configuration, checked with the real amtool and run.

amtool proves the file is valid and resolves routes; only a running Alertmanager
proves the inhibitions silence the right warnings and no others, so one test
starts it (no clustering, its own port and storage) and posts alerts to it.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.artifacts import ALERTMANAGER_CONFIG, RULES_TEST, load_yaml
from tests.support.monitoring import WebhookReceiver, running_alertmanager
from tests.support.processes import until

AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=60)


def test_config_is_valid() -> None:
    result = amtool("check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=Watchdog", "severity=info"], "deadman"),
        (["alertname=VdiHostNotReporting", "severity=critical", "host=vhost01"], "pager"),
        (["alertname=VdiPoolCapacityLow", "severity=warning", "pool=Finanzen"], "ticket"),
        (["alertname=VdiDepartmentLimitReached", "severity=info"], "low-noise"),
        (["alertname=SomethingUnlabelled"], "ticket"),
    ],
)
def test_routes_by_severity(labels: list[str], receiver: str) -> None:
    result = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={receiver}",
        *labels,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """A running Alertmanager with the example config; yields its base URL."""
    with running_alertmanager(ALERTMANAGER_CONFIG, tmp_path) as tool:
        yield tool.url


def alert(name: str, severity: str, **labels: str) -> dict[str, object]:
    return {
        "labels": {"alertname": name, "severity": severity, **labels},
        "annotations": {"summary": name},
        "startsAt": datetime.now(UTC).isoformat(),
    }


def test_warnings_are_inhibited_only_by_the_alert_that_covers_them(alertmanager: str) -> None:
    """A pool's or host's warning waits while a critical of its family fires for
    the same pool or host, and a licence-bound pool's VdiPoolCapacityLow while
    VdiLicenceLimitReached fires for it (that pool never pages as exhausted)."""
    alerts = [
        alert("VdiPoolCapacityExhausted", "critical", pool="Finanzen"),
        alert("VdiPoolCapacityLow", "warning", pool="Finanzen"),
        alert("VdiPoolNoHostRedundancy", "warning", pool="Finanzen"),
        alert("VdiLicenceLimitReached", "warning", pool="Finanzen"),
        alert("VdiPoolCapacityLow", "warning", pool="Bauhof"),
        alert("VdiLicenceLimitReached", "warning", pool="Schule"),
        alert("VdiPoolCapacityLow", "warning", pool="Schule", reason="licences"),
        alert("VdiHostNotReporting", "critical", host="vhost01"),
        alert("VdiHostOverloaded", "warning", host="vhost01"),
        alert("VdiDesktopProbeTimeouts", "warning", host="vhost01"),
        alert("VdiHostOverloaded", "warning", host="vhost02"),
        alert("VdiBrokerDown", "critical", instance="broker-2:8000", job="vdi-broker"),
        alert("VdiLoginFailuresHigh", "warning"),
    ]
    httpx.post(f"{alertmanager}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()
    expected = {
        ("VdiPoolCapacityLow", "Finanzen"): True,
        ("VdiPoolNoHostRedundancy", "Finanzen"): True,
        ("VdiLicenceLimitReached", "Finanzen"): False,
        ("VdiPoolCapacityLow", "Bauhof"): False,
        ("VdiLicenceLimitReached", "Schule"): False,
        ("VdiPoolCapacityLow", "Schule"): True,
        ("VdiHostOverloaded", "vhost01"): True,
        ("VdiDesktopProbeTimeouts", "vhost01"): True,
        ("VdiHostOverloaded", "vhost02"): False,
        ("VdiLoginFailuresHigh", ""): False,
        ("VdiPoolCapacityExhausted", "Finanzen"): False,
        ("VdiHostNotReporting", "vhost01"): False,
    }
    deadline = time.monotonic() + 15
    while True:
        response = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5)
        response.raise_for_status()
        inhibited = {
            (
                item["labels"]["alertname"],
                item["labels"].get("pool") or item["labels"].get("host", ""),
            ): bool(item["status"]["inhibitedBy"])
            for item in response.json()
        }
        # The inhibitor learns about source alerts asynchronously: poll.
        seen = {key: inhibited.get(key) for key in expected}
        if seen == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert seen == expected


# Labels of the alerts that say how, not what about: the same for every pool or
# host (severity, the broker's job) or a variant of one rule (reason).
NOT_GROUPED = frozenset({"severity", "reason", "job"})


def test_group_by_has_every_label_that_names_what_an_alert_is_about() -> None:
    """The labels the rules' promtool tests expect on firing alerts (pool, host,
    department, instance) are all grouped by, on every route that sets group_by:
    otherwise two departments at their limit, or two broker replicas down, come
    as one notification, the second one only at the first's next tick."""
    labels = {
        name
        for case in load_yaml(RULES_TEST)["tests"]
        for check in case.get("alert_rule_test", [])
        for expected in check["exp_alerts"]
        for name in expected["exp_labels"]
    }
    about = labels - NOT_GROUPED
    assert about >= {"pool", "host", "department", "instance"}
    route = load_yaml(ALERTMANAGER_CONFIG)["route"]
    for node in [route, *route.get("routes", [])]:
        if "group_by" in node:
            assert set(node["group_by"]) == about | {"alertname"}, node.get("receiver")


def test_each_department_and_broker_replica_is_its_own_group(alertmanager: str) -> None:
    """Alertmanager with the example config puts alerts of one name but for
    different departments, or different replicas, in groups of their own."""
    alerts = [
        alert("VdiDepartmentLimitReached", "info", department="Finanzen"),
        alert("VdiDepartmentLimitReached", "info", department="Bauamt"),
        alert("VdiBrokerDown", "critical", instance="broker-1:8000", job="vdi-broker"),
        alert("VdiBrokerDown", "critical", instance="broker-2:8000", job="vdi-broker"),
    ]
    httpx.post(f"{alertmanager}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()

    def groups() -> list[tuple[str, str, int]]:
        response = httpx.get(f"{alertmanager}/api/v2/alerts/groups", timeout=5)
        response.raise_for_status()
        return sorted(
            (
                group["labels"]["alertname"],
                group["labels"].get("department") or group["labels"].get("instance", ""),
                len(group["alerts"]),
            )
            for group in response.json()
        )

    expected = [
        ("VdiBrokerDown", "broker-1:8000", 1),
        ("VdiBrokerDown", "broker-2:8000", 1),
        ("VdiDepartmentLimitReached", "Bauamt", 1),
        ("VdiDepartmentLimitReached", "Finanzen", 1),
    ]
    # The dispatcher groups posted alerts asynchronously: poll.
    with suppress(AssertionError):
        until(lambda: groups() == expected, timeout=15, what="one group per department and replica")
    assert groups() == expected


def local_receivers(webhook: WebhookReceiver, tmp_path: Path) -> Path:
    """The example configuration as written, its receivers posting to `webhook`
    (the URL path names the receiver)."""
    config = load_yaml(ALERTMANAGER_CONFIG)
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = f"{webhook.url}/{receiver['name']}"
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.slow
def test_a_second_silent_host_pages_without_waiting_for_the_first_hosts_page(
    tmp_path: Path,
) -> None:
    """Grouped by alert name only, the page for a second host that goes silent
    after the first one's page waited for that page's next group_interval tick
    (5 minutes). Each host is its own group: it pages after group_wait (30 s)."""
    group_wait = 30
    with (
        WebhookReceiver() as webhook,
        running_alertmanager(local_receivers(webhook, tmp_path), tmp_path) as tool,
    ):

        def paged_hosts() -> set[str]:
            return {a["labels"]["host"] for path, _, a in webhook.alerts() if path == "/pager"}

        def post(host: str) -> None:
            silent = alert("VdiHostNotReporting", "critical", host=host)
            httpx.post(f"{tool.url}/api/v2/alerts", json=[silent], timeout=5).raise_for_status()

        post("vhost01")
        until(lambda: paged_hosts() == {"vhost01"}, group_wait + 15, "the first page")
        post("vhost01")  # still firing, as Prometheus re-sends it
        post("vhost02")
        until(lambda: "vhost02" in paged_hosts(), group_wait + 20, "the second host's page")
    pages = [a["labels"]["host"] for path, _, a in webhook.alerts() if path == "/pager"]
    assert sorted(pages) == ["vhost01", "vhost02"], pages


@pytest.mark.slow
def test_the_watchdog_reaches_the_dead_mans_switch_every_minute(tmp_path: Path) -> None:
    """docs/runbooks.md: the dead man's switch expects the Watchdog every minute.
    Alertmanager re-sends only at a group_interval tick, and only when the last
    send is repeat_interval old; a send lags its tick a little, so with both at 1m
    the next tick finds it just short of a minute old and the Watchdog came every
    two minutes, enough for a switch set as the runbook says to raise a false
    alarm. The example's intervals, as written, with a local receiver."""
    with (
        WebhookReceiver() as webhook,
        running_alertmanager(local_receivers(webhook, tmp_path), tmp_path) as tool,
    ):
        watchdog = alert("Watchdog", "info")
        httpx.post(f"{tool.url}/api/v2/alerts", json=[watchdog], timeout=5).raise_for_status()
        arrivals: list[float] = []

        def three_arrived() -> bool:
            if len(webhook.posts()) > len(arrivals):
                arrivals.append(time.monotonic())
            return len(arrivals) >= 3

        until(three_arrived, timeout=150, what="three Watchdog notifications", step=0.1)
    assert {path for path, _ in webhook.posts()} == {"/deadman"}
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert all(gap < 75 for gap in gaps), gaps
