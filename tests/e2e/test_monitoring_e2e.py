"""The monitoring chain end to end: broker and agents, Prometheus, Alertmanager, ops.

Static checks prove that the dashboards and rules name metrics the broker
exports; only a live Prometheus scraping a live broker proves that every panel
shows something and that a silent host pages ops. So this test starts them all
on loopback and drives a small town administration through them:

- two broker replicas on one database, as behind a load balancer (the second
  runs no background jobs, as on SQLite only one may), so that the panels'
  de-duplication of database-derived gauges (`max by`) and summing of event
  counters meet the real case;
- two simulated hosts: vhost01 serves the office pool Finanzen (department
  entitlement, a remote-work cap of 1) and has one desktop that never answers
  its console probe; vhost02 serves the field pool Bauhof; the pool Archiv
  has no desktops yet;
- staff who log in with password and TOTP (codes from oathtool), get
  desktops, are refused by the department cap, replay a code, mistype a
  password and hit a locked account, so that every counter moves; then an
  admin drains vhost02;
- Prometheus scraping every second with a test copy of rules.yml whose `for`
  are two seconds, sending to Alertmanager, which is configured like
  dashboards/alertmanager.example.yml but posts to a webhook in this test.

Panel queries run as Grafana would run them: range panels via /api/v1/query_range
over the scenario at a 1 s step with `$__rate_interval` = 4 s (Grafana's value
for a 1 s scrape interval: max(4 x scrape interval, step + scrape interval));
table panels, which are instant queries, via /api/v1/query. A query "returns
data" when some sample is a real number (NaN is drawn as a gap).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shlex
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from broker.clock import SystemClock
from broker.config import load_settings
from broker.domain import WorkMode
from broker.hosts import service as hosts
from broker.policy import store as policies
from broker.runtime import open_runtime
from broker.users import service as users
from tests.support.accounts import PASSWORD, add_user
from tests.support.artifacts import (
    ALERTMANAGER_CONFIG,
    DASHBOARDS,
    PanelQuery,
    expand_variables,
    load_dashboard,
    load_yaml,
    panel_queries,
    rules_with_short_for,
    variable_metric,
)
from tests.support.fleet import add_pool
from tests.support.monitoring import (
    PrometheusAPI,
    WebhookReceiver,
    finite_samples,
    running_alertmanager,
    running_prometheus,
)
from tests.support.processes import (
    clean_env,
    free_port,
    start_agent,
    start_broker,
    stop,
    until,
    vdi_broker,
    wait_http,
)
from tests.support.scrape import samples, value
from tests.support.totp import oathtool_code

pytestmark = pytest.mark.slow

Json = dict[str, Any]

FAST = {
    "report_interval": "1",
    "job_interval_s": "0.5",
    "host_down_after_missed": "3",
    "cookie_secure": "false",  # plain http on loopback: the session cookie must come back
}
SCRAPE = "1s"  # scrape and rule evaluation interval
STEP_S = 1.0
RATE_INTERVAL = "4s"
SHORT_FOR = "2s"

# Host name to the agent's arguments besides broker, token and metrics port.
# vhost01's first desktop never answers its probe (0.3 s timeout).
AGENTS = {
    "vhost01": shlex.split("--simulated-desktops 4 --pool Finanzen")
    + shlex.split("--simulated-hang 1 --probe-timeout 0.3"),
    "vhost02": shlex.split("--simulated-desktops 3 --pool Bauhof"),
}
# User name to (department, work mode).
STAFF = {
    "anna": ("Finanzen", WorkMode.HOME),
    "bernd": ("Finanzen", WorkMode.HOME),
    "carla": ("Tiefbau", WorkMode.FIELD),
    "dora": ("Finanzen", WorkMode.HOME),
}

# Panel (dashboard uid, title, refId), the label that tells series apart, and the
# values it must show once the scenario ran: what the staff above did, counted
# once although two replicas export it.
EXPECTED_VALUES: list[tuple[tuple[str, str, str], str, dict[str, float]]] = [
    (
        ("vdi-capacity", "Sessions vs usable capacity", "A"),
        "pool",
        {"Finanzen": 1, "Bauhof": 1, "Archiv": 0},
    ),
    (
        ("vdi-capacity", "Licences in use vs licence limit", "B"),
        "pool",
        {"Finanzen": 10, "Bauhof": 5, "Archiv": 5},
    ),
    (("vdi-capacity", "Department remote work vs limit", "A"), "department", {"Finanzen": 1}),
    (("vdi-capacity", "Department remote work vs limit", "B"), "department", {"Finanzen": 1}),
    (("vdi-capacity", "Hosts: up, draining, in maintenance, down", "A"), "", {"": 2}),
    (("vdi-capacity", "Hosts: up, draining, in maintenance, down", "B"), "", {"": 1}),
    (("vdi-capacity", "Hosts: up, draining, in maintenance, down", "D"), "", {"": 0}),
    (("vdi-hosts", "Host state", "A"), "host", {"vhost01": 0, "vhost02": 1}),
]
UTILISATION_PANELS = [
    ("vdi-capacity", "Pool utilisation now", "A"),
    ("vdi-capacity", "Pool utilisation", "A"),
]
# Each dashboard variable's values: every pool and every host.
VARIABLE_VALUES = {"pool": {"Finanzen", "Bauhof", "Archiv"}, "host": set(AGENTS)}
HOSTS_DRAINING = ("vdi-capacity", "Hosts: up, draining, in maintenance, down", "B")
HOSTS_DOWN = ("vdi-capacity", "Hosts: up, draining, in maintenance, down", "D")


async def prepare(data: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Pools, the cap, hosts and staff, written before any broker starts (so no
    broker holds a cached view of an emptier fleet). Returns (host tokens, TOTP
    secrets)."""
    rt = await open_runtime(load_settings(None, data_dir=data), clock=SystemClock())
    try:
        await add_pool(rt, "Finanzen", max_sessions=10, departments=["Finanzen"])
        await add_pool(rt, "Bauhof", max_sessions=5, departments=["Tiefbau"], field=True)
        await add_pool(rt, "Archiv", max_sessions=5, departments=["Archiv"])  # no desktops yet
        await policies.set_department_cap(rt, "Finanzen", max_sessions=1, share=None, actor="test")
        tokens = {host: await hosts.add(rt, host, "test") for host in AGENTS}
        secrets: dict[str, str] = {}
        for name, (department, mode) in STAFF.items():
            secret = await add_user(rt, name, department=department, work_mode=mode)
            assert secret is not None
            secrets[name] = secret
        await users.set_locked(rt, "dora", True, "test")
        return tokens, secrets
    finally:
        await rt.close()


def host_port(url: str) -> str:
    return url.removeprefix("http://")


def prometheus_config(brokers: list[str], agents: dict[str, str], alertmanager: str) -> Json:
    """Like prometheus.example.yml, on loopback and fast.

    The example derives an agent's `host` label from the target's address; here
    every target is 127.0.0.1, so each static target carries its label instead
    (which the example's relabelling keeps).
    """
    return {
        "global": {
            "scrape_interval": SCRAPE,
            "scrape_timeout": SCRAPE,
            "evaluation_interval": SCRAPE,
        },
        "rule_files": ["rules.yml"],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [host_port(alertmanager)]}]}]
        },
        "scrape_configs": [
            {
                "job_name": "vdi-broker",
                "static_configs": [{"targets": [host_port(url) for url in brokers]}],
            },
            {
                "job_name": "vdi-agent",
                "static_configs": [
                    {"targets": [host_port(url)], "labels": {"host": host}}
                    for host, url in agents.items()
                ],
            },
        ],
    }


def alertmanager_config(webhook: str) -> Json:
    """dashboards/alertmanager.example.yml with every receiver posting to
    `webhook`/<receiver name> and every group wait and interval at 1 s, so the
    example's routing is what delivers the alert."""
    config = load_yaml(ALERTMANAGER_CONFIG)
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = f"{webhook}/{receiver['name']}"
    top = config["route"]
    top["group_wait"] = top["group_interval"] = "1s"
    for route in top.get("routes", []):
        for key in ("group_wait", "group_interval"):
            if key in route:
                route[key] = "1s"
    return config


def write_yaml(path: Path, document: Json) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Stack:
    """Everything the test started, by role."""

    brokers: list[str]
    agents: dict[str, subprocess.Popen[bytes]]
    prometheus: PrometheusAPI
    webhook: WebhookReceiver
    secrets: dict[str, str]
    data: Path  # the brokers' data directory
    started: float  # Unix time just before Prometheus started


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    # Shown by pytest only when the test fails: logs and configs are there.
    print(f"monitoring end-to-end files: {tmp_path}")
    data = tmp_path / "data"
    tokens, secrets = asyncio.run(prepare(data))
    with ExitStack() as cleanup:
        webhook = cleanup.enter_context(WebhookReceiver())
        am_config = write_yaml(tmp_path / "alertmanager.yml", alertmanager_config(webhook.url))
        alertmanager = cleanup.enter_context(running_alertmanager(am_config, tmp_path))

        brokers: list[str] = []
        for settings in (FAST, {**FAST, "jobs_enabled": "false"}):
            process, base = start_broker(data, db_url=None, port=None, **settings)
            cleanup.callback(stop, process)
            brokers.append(base)

        agents: dict[str, subprocess.Popen[bytes]] = {}
        metrics: dict[str, str] = {}
        for host, extra in AGENTS.items():
            token_file = tmp_path / f"{host}.token"
            token_file.write_text(tokens[host] + "\n")
            token_file.chmod(0o600)
            port = free_port()
            agents[host] = start_agent(
                brokers[0],
                token_file,
                tmp_path / f"{host}-state",
                host,
                *extra,
                "--metrics-port",
                str(port),
            )
            cleanup.callback(stop, agents[host])
            metrics[host] = f"http://127.0.0.1:{port}"
        for host, url in metrics.items():
            wait_http(f"{url}/metrics", proc=agents[host])
            # A host that never reported pages (VdiHostNotReporting,
            # reason=never_reported) after the rules' shortened `for`.
            until(lambda url=url: first_report_sent(url), timeout=30, what=f"{host}'s first report")

        # Started last: every target answers from the first scrape on, so no
        # VdiBrokerDown fires while the others are still starting.
        write_yaml(tmp_path / "rules.yml", rules_with_short_for(SHORT_FOR))
        config = write_yaml(
            tmp_path / "prometheus.yml", prometheus_config(brokers, metrics, alertmanager.url)
        )
        started = time.time()
        prometheus = cleanup.enter_context(running_prometheus(config, tmp_path))
        yield Stack(brokers, agents, PrometheusAPI(prometheus.url), webhook, secrets, data, started)


def first_report_sent(agent_metrics: str) -> bool:
    found = samples(httpx.get(f"{agent_metrics}/metrics", timeout=5).text)
    return value(found, "vdi_agent_reports_sent_total") >= 1


def log_in(client: httpx.Client, base: str, name: str, code: str, password: str = PASSWORD) -> int:
    """A login attempt at the replica `base`; after a success `client` carries the
    session cookie and the CSRF header. Returns the status."""
    response = client.post(
        f"{base}/api/v1/auth/login", json={"username": name, "password": password, "code": code}
    )
    if response.status_code == 200:
        client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return response.status_code


def run_scenario(stack: Stack) -> None:
    """Logins and session requests spread over both replicas, then a drained
    host: each counter moves, each gauge has a value that is not just the
    exported 0."""
    first, second = stack.brokers
    now = dt.datetime.now(dt.UTC)
    code = {name: oathtool_code(secret, now) for name, secret in stack.secrets.items()}
    with ExitStack() as clients:
        anna, bernd, carla, stranger = (
            clients.enter_context(httpx.Client(timeout=30)) for _ in range(4)
        )
        statuses = [
            log_in(anna, first, "anna", code["anna"]),
            log_in(bernd, second, "bernd", code["bernd"]),
            log_in(carla, second, "carla", code["carla"]),
            log_in(stranger, first, "anna", code["anna"]),  # the same code again
            log_in(stranger, second, "dora", code["dora"]),  # a locked account
            log_in(stranger, first, "bernd", code["bernd"], password="wrong horse"),
        ]
        assert statuses == [200, 200, 200, 401, 423, 401], statuses
        got = anna.post(f"{first}/api/v1/sessions", json={"pool": "Finanzen"})
        assert got.status_code == 201, got.text
        refused = bernd.post(f"{second}/api/v1/sessions", json={"pool": "Finanzen"})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "department_quota"
        field = carla.post(f"{second}/api/v1/sessions", json={"pool": "Bauhof"})
        assert field.status_code == 201, field.text
    # An admin drains vhost02: it keeps carla's session and takes no new ones.
    admin_env = clean_env({"VDI_DATA_DIR": str(stack.data)})
    drained = vdi_broker("host", "drain", "vhost02", env=admin_env)
    assert drained.returncode == 0, drained.stderr


def scraped_after_scenario(api: PrometheusAPI) -> bool:
    """Prometheus holds the scenario's counts, summed over both replicas."""
    logins = api.values('sum by (result) (vdi_logins_total{job="vdi-broker"})', "result")
    assignments = api.values('sum by (result) (vdi_assignments_total{job="vdi-broker"})', "result")
    return (
        all(logins.get(r, 0) >= 1 for r in ("invalid_credentials", "replay", "locked"))
        and logins.get("success", 0) >= 3
        and assignments.get("assigned", 0) >= 2
        and assignments.get("department_quota", 0) >= 1
        and instant_values(api, HOSTS_DRAINING, "") == {"": 1}
    )


def ready_for_scenario(api: PrometheusAPI) -> bool:
    """Both replicas and both agents scraped twice (a baseline for rate()), both
    hosts up at the broker and the hanging desktop's probe timeouts counted."""
    scrapes = api.values("count_over_time(up[1m]) and up == 1", "instance")
    hosts_up = api.values('max by (host) (vdi_host_up{job="vdi-broker"})', "host")
    timeouts = api.values('max by (host) (vdi_host_probe_timeouts_total{job="vdi-broker"})', "host")
    return (
        len(scrapes) == 4
        and min(scrapes.values()) >= 2
        and hosts_up == {host: 1.0 for host in AGENTS}
        and timeouts.get("vhost01", 0) > 0
    )


def all_queries() -> list[PanelQuery]:
    return [query for name in sorted(DASHBOARDS) for query in panel_queries(name)]


def run(api: PrometheusAPI, query: PanelQuery, start: float) -> list[Json]:
    """The query as Grafana sends it: instant for tables, else over the scenario."""
    expr = expand_variables(query.expr, RATE_INTERVAL)
    if query.instant:
        return api.query(expr)
    return api.query_range(expr, start, time.time(), STEP_S)


def panels_without_data(api: PrometheusAPI, start: float) -> list[str]:
    missing = []
    for query in all_queries():
        result = run(api, query, start)
        if not finite_samples(result):
            missing.append(
                f"{query.dashboard} / {query.panel} / {query.ref_id}: "
                f"{expand_variables(query.expr, RATE_INTERVAL)} -> {result[:2]}"
            )
    return missing


def variable_values(api: PrometheusAPI) -> dict[str, set[str]]:
    """What each dashboard's `label_values(selector, label)` variable offers."""
    offered: dict[str, set[str]] = {}
    for name in DASHBOARDS:
        for variable in load_dashboard(name)["templating"]["list"]:
            if variable["type"] == "query":
                selector = variable_metric(variable["query"]["query"])
                label = variable["name"]
                offered.setdefault(label, set()).update(api.values(selector, label))
    return offered


def panel(key: tuple[str, str, str]) -> PanelQuery:
    return next(q for q in all_queries() if (q.dashboard, q.panel, q.ref_id) == key)


def instant_values(api: PrometheusAPI, key: tuple[str, str, str], label: str) -> dict[str, float]:
    return api.values(expand_variables(panel(key).expr, RATE_INTERVAL), label)


def host_not_reporting(stack: Stack) -> list[tuple[str, Json, Json]]:
    return [
        posted
        for posted in stack.webhook.alerts()
        if posted[2]["labels"]["alertname"] == "VdiHostNotReporting"
    ]


def test_every_panel_shows_data_and_a_silent_host_pages_ops(stack: Stack) -> None:
    api = stack.prometheus
    until(lambda: ready_for_scenario(api), timeout=60, what="targets scraped, hosts up")

    run_scenario(stack)
    until(lambda: scraped_after_scenario(api), timeout=30, what="the scenario's counts scraped")

    missing: list[str] = []

    def every_panel_has_data() -> bool:
        missing[:] = panels_without_data(api, stack.started)
        return not missing

    # rate() and histogram_quantile() need the samples on both sides of an
    # event inside one $__rate_interval: poll instead of guessing a sleep.
    with suppress(AssertionError):
        until(every_panel_has_data, timeout=30, what="data in every panel")
    assert not missing, "panels without data:\n" + "\n".join(missing)
    for key, label, expected in EXPECTED_VALUES:
        assert instant_values(api, key, label) == expected, key
    # Archiv has no desktops yet: not a full pool at 100%, simply not shown.
    for key in UTILISATION_PANELS:
        assert set(instant_values(api, key, "pool")) == {"Finanzen", "Bauhof"}, key
    assert variable_values(api) == VARIABLE_VALUES

    # Quiet while both hosts report: the rule's must-not-fire case, live.
    assert not api.query('ALERTS{alertname="VdiHostNotReporting"}')
    stop(stack.agents["vhost01"])

    firing = until(
        lambda: api.query('ALERTS{alertname="VdiHostNotReporting", alertstate="firing"}'),
        timeout=45,
        what="VdiHostNotReporting firing in Prometheus",
    )
    assert [alert["metric"]["host"] for alert in firing] == ["vhost01"]
    assert instant_values(api, HOSTS_DOWN, "") == {"": 1}

    posted = until(lambda: host_not_reporting(stack), timeout=30, what="the page at the webhook")
    path, payload, alert = posted[0]
    assert (path, payload["receiver"], payload["status"]) == ("/pager", "pager", "firing")
    assert alert["status"] == "firing"
    assert alert["labels"]["host"] == "vhost01"
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["runbook_url"].endswith("#vdihostnotreporting")
    assert {a["labels"]["host"] for _, _, a in host_not_reporting(stack)} == {"vhost01"}

    # A pool created without desktops is not "full": no capacity alert, not even
    # pending, at any evaluation of the whole run.
    assert not api.query('count_over_time(ALERTS{pool="Archiv"}[10m])')
