"""GET /metrics exactly per docs/design.md, checked on a live broker with promtool."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from agent.protocol import PowerState, ProbeResult
from broker import fleet
from broker.app import create_app
from broker.clock import FakeClock
from broker.config import load_settings
from broker.domain import HostState, WorkMode
from broker.hosts import service as hosts
from broker.net import PRIVATE_NETWORKS
from broker.runtime import Runtime, open_runtime
from broker.store.tables import DepartmentPolicy, Host
from tests.conftest import make_settings
from tests.support.artifacts import (
    BROKER_METRIC_ADDITIONS,
    DESIGN,
    OPERATIONS,
    design_metric_names,
)
from tests.support.audit import audit_events
from tests.support.fleet import FakeAgent, add_host, add_pool, ask, staff
from tests.support.scrape import samples, value

ALLOWED_LABELS = {
    "host",
    "pool",
    "department",
    "state",
    "result",
    "resource",
    "component",
    "power_state",
    "work_mode",
    "direction",
    "version",
    "agent_version",
    "le",
}


def design_labels() -> dict[str, set[str]]:
    text = DESIGN.read_text(encoding="utf-8")
    section = text[text.index("Prometheus metrics of the broker") : text.index("The agent exposes")]
    labels: dict[str, set[str]] = {}
    for name, inner in re.findall(r"`(vdi_[a-z0-9_]+)(?:\{([^}`]*)\})?`", section):
        labels[name] = {part.split("=")[0].strip() for part in inner.split(",") if part.strip()}
    return labels


@pytest.fixture
async def scrape(runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock) -> str:
    """A broker with two pools, a fresh and a stale host, sessions and refusals."""
    await add_pool(runtime, max_sessions=10)
    await add_pool(runtime, "Außendienst", field=True, max_sessions=5)
    async with runtime.db.write() as s:
        s.add(DepartmentPolicy(department="Finanzen", remote_cap=5, updated_at=clock.now()))
    stale = await add_host(runtime, client, "vhost02")
    stale.add(3, pool="Finanzen", prefix="s")
    await stale.report()
    clock.advance(runtime.settings.report_interval * 4)
    fresh = await add_host(runtime, client, "vhost01")
    fresh.add(2, pool="Finanzen")
    fresh.add(1, pool="Außendienst", prefix="a")
    await fresh.report()
    assert (await ask(client, await staff(runtime, "maria"))).status_code == 201
    felix = await staff(runtime, "felix", work_mode=WorkMode.FIELD)
    assert (await ask(client, felix, pool="Außendienst")).status_code == 201
    await ask(client, await staff(runtime, "kurt", department="Bauamt"), pool="Außendienst")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


def test_every_design_metric_with_its_type_and_labels(scrape: str) -> None:
    found = samples(scrape)
    types = {f.name: f.type for f in text_string_to_metric_families(scrape)}
    for name, labels in design_labels().items():
        base = name.removesuffix("_total")
        kind = types.get(base) or types.get(name)
        assert kind is not None, f"{name} is not exported"
        if name.endswith("_total"):
            assert kind == "counter", name
        sample_name = f"{name}_bucket" if kind == "histogram" else name
        assert sample_name in found, f"no samples of {name}"
        for sample_labels, _ in found[sample_name]:
            assert set(sample_labels) - {"le"} == labels, (name, sample_labels)
    histograms = {n for n, t in types.items() if t == "histogram"}
    assert histograms == {"vdi_assignment_duration_seconds", "vdi_session_launch_duration_seconds"}


def test_labels_are_bounded(scrape: str) -> None:
    for family in text_string_to_metric_families(scrape):
        for s in family.samples:
            assert set(s.labels) <= ALLOWED_LABELS, (s.name, s.labels)
            assert "maria" not in s.labels.values() and "felix" not in s.labels.values()
    exported = {s.name for f in text_string_to_metric_families(scrape) for s in f.samples} | {
        f.name for f in text_string_to_metric_families(scrape)
    }
    assert design_metric_names(DESIGN.read_text()) <= exported
    # What the broker exports beyond the design is documented for operators.
    assert exported >= BROKER_METRIC_ADDITIONS
    operations = OPERATIONS.read_text(encoding="utf-8")
    assert all(f"`{name}`" in operations for name in BROKER_METRIC_ADDITIONS)


def test_values_and_zeros(scrape: str) -> None:
    found = samples(scrape)
    assert value(found, "vdi_sessions", pool="Finanzen", state="active", work_mode="home") == 1
    assert value(found, "vdi_sessions", pool="Finanzen", state="pending", work_mode="field") == 0
    assert value(found, "vdi_sessions", pool="Außendienst", state="active", work_mode="field") == 1
    assert value(found, "vdi_pool_max_sessions", pool="Finanzen") == 10
    # Only the fresh host's two Finanzen desktops count as usable capacity.
    assert value(found, "vdi_pool_capacity_sessions", pool="Finanzen") == 2
    assert value(found, "vdi_pool_utilization_ratio", pool="Finanzen") == 0.5
    assert value(found, "vdi_pool_capacity_without_largest_host", pool="Finanzen") == 0
    # The silent host's three desktops: their power is no longer known.
    assert value(found, "vdi_pool_desktops", pool="Finanzen", power_state="running") == 2
    assert value(found, "vdi_pool_desktops", pool="Finanzen", power_state="unknown") == 3
    assert value(found, "vdi_pool_desktops", pool="Finanzen", power_state="missing") == 0
    assert value(found, "vdi_department_remote_sessions", department="Finanzen") == 1
    assert value(found, "vdi_department_remote_limit", department="Finanzen") == 5
    assert value(found, "vdi_assignments_total", pool="Finanzen", result="assigned") == 1
    assert value(found, "vdi_assignments_total", pool="Außendienst", result="not_entitled") == 1
    assert value(found, "vdi_assignments_total", pool="Finanzen", result="licence_limit") == 0
    assert value(found, "vdi_host_sessions", host="vhost01", state="active") == 2
    assert value(found, "vdi_host_sessions", host="vhost01", state="disconnected") == 0
    assert value(found, "vdi_host_session_capacity", host="vhost01") == 3
    assert value(found, "vdi_host_state", host="vhost01", state="active") == 1
    assert value(found, "vdi_host_state", host="vhost01", state="draining") == 0
    assert 0 < value(found, "vdi_host_load_index_ratio", host="vhost01") <= 1
    assert value(
        found, "vdi_host_load_component_ratio", host="vhost01", component="sessions"
    ) == pytest.approx(2 / 3)
    assert value(found, "vdi_assignment_duration_seconds_count") == 3
    assert value(found, "vdi_session_launch_duration_seconds_count", pool="Finanzen") == 1


def test_a_stale_host_keeps_what_the_broker_knows_and_drops_its_load(scrape: str) -> None:
    """Sessions stranded on a silent host are what ops need to see; its counters
    stay so that rate() does not lose them; its load figures are too old."""
    kept = {
        "vdi_host_info",
        "vdi_host_last_report_timestamp_seconds",
        "vdi_host_up",
        "vdi_host_state",
        "vdi_host_sessions",
        "vdi_host_session_capacity",
        "vdi_host_probes_total",
        "vdi_host_probe_timeouts_total",
    }
    found = samples(scrape)
    stale = {
        name
        for name, series in found.items()
        if any(labels.get("host") == "vhost02" for labels, _ in series)
    }
    assert stale == kept
    assert value(found, "vdi_host_session_capacity", host="vhost02") == 3
    assert {
        labels["state"]: v
        for labels, v in found["vdi_host_sessions"]
        if labels["host"] == "vhost02"
    } == {"pending": 0, "active": 0, "disconnected": 0}
    assert value(found, "vdi_host_up", host="vhost02") == 0
    assert value(found, "vdi_host_up", host="vhost01") == 1
    assert value(found, "vdi_host_last_report_timestamp_seconds", host="vhost02") > 0


def test_promtool_check_metrics_on_a_live_scrape(scrape: str) -> None:
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=scrape, text=True, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_metrics_is_a_route_not_a_redirect(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics", follow_redirects=False)
    assert response.status_code == 200
    assert "vdi_broker_build_info" in response.text


async def test_a_host_in_maintenance(runtime: Runtime, client: httpx.AsyncClient) -> None:
    agent = await add_host(runtime, client)
    await agent.report()
    async with runtime.db.write() as s:
        await s.execute(update(Host).values(state="maintenance"))
    found = samples((await client.get("/metrics")).text)
    assert value(found, "vdi_host_state", host="vhost01", state="maintenance") == 1


async def test_desktops_whose_console_fails_are_not_usable_capacity(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Placement does not hand out a running desktop whose console refused or
    timed out on the agent's last probe, or that has no console endpoint; so the
    capacity the alerts watch must not count it either."""
    await add_pool(runtime, max_sessions=10)
    stale = await add_host(runtime, client, "vhost02")
    stale.add(1, pool="Finanzen", prefix="s")
    stale.set_console("s000", ProbeResult(ok=False, error="refused"))
    await stale.report()
    clock.advance(runtime.settings.report_interval * 4)
    agent = await add_host(runtime, client)
    agent.add(5, pool="Finanzen")
    agent.add(1, pool="Finanzen", power=PowerState.STOPPED, prefix="off")
    agent.set_console("vhost01-d000", ProbeResult(ok=False, error="refused"))
    agent.set_console("vhost01-d001", ProbeResult(ok=False, error="timeout"))
    agent.set_console("vhost01-d002", None, endpoint=False)
    agent.set_console("vhost01-d003", None)  # not probed yet: counts, as in placement
    await agent.report()
    found = samples((await client.get("/metrics")).text)
    # d003, d004 and the stopped desktop; the silent host's desktop is not
    # counted as out of service: its probe is stale, and VdiHostNotReporting covers it.
    assert value(found, "vdi_pool_capacity_sessions", pool="Finanzen") == 3
    assert value(found, "vdi_pool_desktops_out_of_service", pool="Finanzen") == 3
    assert value(found, "vdi_pool_desktops", pool="Finanzen", power_state="running") == 5
    assert value(found, "vdi_pool_desktops", pool="Finanzen", power_state="unknown") == 1
    # Every session the pool now gives goes to a desktop counted as usable.
    for name in ("anna", "bernd", "carla"):
        assert (await ask(client, await staff(runtime, name))).status_code in (201, 202)
        # past the logon penalty of the new session (load index, DESIGN)
        clock.advance(runtime.settings.report_interval + 1)
        await agent.obey()
    refused = await ask(client, await staff(runtime, "dora"))
    assert (refused.status_code, refused.json()["error"]) == (503, "capacity_full")

    agent.set_console("vhost01-d000", ProbeResult(ok=True, latency_s=0.002))
    await agent.report()
    found = samples((await client.get("/metrics")).text)
    assert value(found, "vdi_pool_capacity_sessions", pool="Finanzen") == 4
    assert value(found, "vdi_pool_desktops_out_of_service", pool="Finanzen") == 2


async def finanzen_on_two_hosts(
    rt: Runtime, client: httpx.AsyncClient
) -> tuple[FakeAgent, FakeAgent]:
    """Pool Finanzen (10 licences) with 2 desktops on vhost01 and 3 on vhost02."""
    await add_pool(rt, max_sessions=10)
    first = await add_host(rt, client, "vhost01")
    first.add(2, pool="Finanzen")
    await first.report()
    second = await add_host(rt, client, "vhost02")
    second.add(3, pool="Finanzen")
    await second.report()
    return first, second


async def desktops_for(
    rt: Runtime,
    client: httpx.AsyncClient,
    clock: FakeClock,
    names: list[str],
    *agents: FakeAgent,
) -> None:
    """Each user gets a desktop, and the agents report a report interval later."""
    for name in names:
        assert (await ask(client, await staff(rt, name))).status_code == 201
        clock.advance(rt.settings.report_interval + 1)
        for agent in agents:
            await agent.report()


async def test_sessions_on_a_draining_host_do_not_hide_free_desktops(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A drained host keeps its sessions, and their desktops stay in use there:
    they hold licences but take none of the desktops on the hosts that still
    take sessions. Counted against those alone, `status` showed 0 free and
    VdiPoolCapacityExhausted fired while desktops were free and handed out."""
    first, second = await finanzen_on_two_hosts(runtime, client)
    await hosts.set_state(runtime, "vhost02", HostState.DRAINING, "test")
    await desktops_for(runtime, client, clock, ["anna", "bernd"], first, second)
    await hosts.set_state(runtime, "vhost02", HostState.ACTIVE, "test")
    await hosts.set_state(runtime, "vhost01", HostState.DRAINING, "test")

    found = samples((await client.get("/metrics")).text)
    # Two sessions on vhost01, three free desktops on vhost02.
    assert value(found, "vdi_pool_capacity_sessions", pool="Finanzen") == 5
    assert value(found, "vdi_pool_utilization_ratio", pool="Finanzen") == 0.4
    (pool,) = (await fleet.read(runtime)).pools.values()
    assert pool.free == 3
    await desktops_for(runtime, client, clock, ["carla", "dora", "emil"], first, second)
    found = samples((await client.get("/metrics")).text)
    assert value(found, "vdi_pool_utilization_ratio", pool="Finanzen") == 1
    refused = await ask(client, await staff(runtime, "fritz"))
    assert (refused.status_code, refused.json()["error"]) == (503, "capacity_full")


async def test_draining_the_largest_host_does_not_make_the_pool_redundant(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A drained host keeps its sessions: if it fails, they are lost like any
    other host's. With 3 sessions on a host drained later and 2 free desktops on
    the other, losing the drained host leaves room for 2, not 3; counted only
    among the accepting hosts, the drain raised the figure from 2 to 3 and
    VdiPoolNoHostRedundancy (and `status`) understated the risk."""
    first, second = await finanzen_on_two_hosts(runtime, client)
    await hosts.set_state(runtime, "vhost01", HostState.DRAINING, "test")
    await desktops_for(runtime, client, clock, ["anna", "bernd", "carla"], first, second)
    await hosts.set_state(runtime, "vhost01", HostState.ACTIVE, "test")
    found = samples((await client.get("/metrics")).text)
    assert value(found, "vdi_pool_capacity_without_largest_host", pool="Finanzen") == 2

    await hosts.set_state(runtime, "vhost02", HostState.DRAINING, "test")
    found = samples((await client.get("/metrics")).text)
    assert value(found, "vdi_pool_capacity_sessions", pool="Finanzen") == 5
    assert value(found, "vdi_pool_capacity_without_largest_host", pool="Finanzen") == 2


async def test_a_hosts_resource_ceiling_bounds_the_pools_usable_capacity(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A host with 4 stopped desktops whose agent says it can run 2 at once
    (`vdi-agent --capacity 2`): placement starts no third one and refuses with
    capacity_full. Counted by desktops, the pool showed 2 of 4 in use, so
    VdiPoolCapacityLow and VdiPoolCapacityExhausted stayed quiet while staff
    were refused."""
    await add_pool(runtime, max_sessions=10)
    agent = await add_host(runtime, client, "vhost01")
    agent.capacity = 2
    agent.add(4, pool="Finanzen", power=PowerState.STOPPED)
    await agent.report()
    found = samples((await client.get("/metrics")).text)
    assert value(found, "vdi_pool_capacity_sessions", pool="Finanzen") == 2
    for name in ("anna", "bernd"):
        assert (await ask(client, await staff(runtime, name))).status_code == 202
        await agent.obey()
    refused = await ask(client, await staff(runtime, "carla"))
    assert (refused.status_code, refused.json()["error"]) == (503, "capacity_full")
    found = samples((await client.get("/metrics")).text)
    assert value(found, "vdi_pool_capacity_sessions", pool="Finanzen") == 2
    assert value(found, "vdi_pool_utilization_ratio", pool="Finanzen") == 1


async def test_a_host_without_desktops_scores_full_with_capacity_0(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """What VdiHostOverloaded tells apart: placement counts an idle, empty host
    as full, and the capacity of 0 next to it is what keeps the alert quiet."""
    await (await add_host(runtime, client)).report()  # e.g. an empty static list
    found = samples((await client.get("/metrics")).text)
    assert value(found, "vdi_host_up", host="vhost01") == 1
    assert value(found, "vdi_host_load_index_ratio", host="vhost01") == 1
    assert value(found, "vdi_host_session_capacity", host="vhost01") == 0


def test_every_metric_a_dashboard_or_rule_uses_is_in_the_live_exposition(scrape: str) -> None:
    from tests.support.artifacts import (
        AGENT_METRIC_NAMES,
        DASHBOARDS,
        SCRAPE_METRIC_NAMES,
        alert_rules,
        panel_queries,
    )
    from tests.support.promql import metric_names

    exposed = {f.name for f in text_string_to_metric_families(scrape)}
    exposed |= {s.name for f in text_string_to_metric_families(scrape) for s in f.samples}
    used: set[str] = set()
    for board in DASHBOARDS:
        for query in panel_queries(board):
            used |= metric_names(query.expr)
    for rule in alert_rules():
        used |= metric_names(rule["expr"])
    broker_side = {n for n in used if not n.startswith("vdi_agent_")} - SCRAPE_METRIC_NAMES
    assert broker_side <= exposed, broker_side - exposed
    # The agent's names are checked against a live agent in the agent's tests.
    assert {n for n in used if n.startswith("vdi_agent_")} <= AGENT_METRIC_NAMES


async def test_the_collector_api_gives_the_same_series(runtime: Runtime, scrape: str) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from broker import fleet
    from broker.metrics import BrokerCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(await fleet.read(runtime), runtime.telemetry))
    standard = generate_latest(registry).decode()

    def series(text: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
        return {
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name != "vdi_host_last_report_timestamp_seconds"
        }

    assert series(standard) == series(scrape)


async def test_metrics_are_served_to_the_monitoring_network_only(tmp_path: Path) -> None:
    """By default loopback and the private ranges may scrape; a staff member on
    the internet, directly or through the trusted proxy, gets 403 and no figures."""
    assert load_settings(None, data_dir=tmp_path).metrics_networks == list(PRIVATE_NETWORKS)
    settings = make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'vdi.sqlite3'}",
        metrics_networks=list(PRIVATE_NETWORKS),
        trusted_proxies=["10.0.0.1/32"],
    )
    rt = await open_runtime(settings)
    app = create_app(settings, runtime=rt)

    async def scrape_from(peer: str, forwarded_for: str | None = None) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(peer, 50000))
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
        async with httpx.AsyncClient(transport=transport, base_url="http://broker") as c:
            return await c.get("/metrics", headers=headers)

    try:
        for peer in ("127.0.0.1", "::1", "10.20.0.5", "192.168.1.4", "::ffff:172.16.3.3"):
            allowed = await scrape_from(peer)
            assert allowed.status_code == 200, peer
            assert "vdi_" in allowed.text
        assert (await scrape_from("10.0.0.1", "10.20.0.9")).status_code == 200
        for peer, forwarded in (
            ("203.0.113.7", None),
            ("2001:db8::7", None),
            ("10.0.0.1", "203.0.113.7"),  # the proxy passes a home worker on
            ("203.0.113.7", "10.20.0.9"),  # a forged hop from an untrusted peer
        ):
            refused = await scrape_from(peer, forwarded)
            assert refused.status_code == 403, (peer, forwarded)
            assert refused.json()["error"] == "forbidden"
            assert "vdi_" not in refused.text
    finally:
        await rt.close()


async def test_a_hop_the_client_sent_on_a_line_of_its_own_is_not_believed(
    tmp_path: Path,
) -> None:
    """A proxy may add its hop as an X-Forwarded-For line of its own (HAProxy's
    `option forwardfor`) after the line the client sent. All lines are one list:
    the client's line alone would let anybody pass for the monitoring network,
    and give each login a made-up address for the audit and the rate limit."""
    settings = make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'vdi.sqlite3'}",
        metrics_networks=["10.20.0.0/24"],
        trusted_proxies=["10.0.0.1/32"],
    )
    rt = await open_runtime(settings)
    app = create_app(settings, runtime=rt)
    transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 50000))
    two_lines = [("X-Forwarded-For", "10.20.0.9"), ("X-Forwarded-For", "203.0.113.7")]
    body = {"username": "nobody", "password": "whatever!", "code": "123456"}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://broker") as c:
            refused = await c.get("/metrics", headers=two_lines)
            assert refused.status_code == 403
            assert "vdi_" not in refused.text
            one_line = {"X-Forwarded-For": "10.20.0.9, 203.0.113.7"}
            assert (await c.get("/metrics", headers=one_line)).status_code == 403
            forged = [("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-For", "203.0.113.7")]
            await c.post("/api/v1/auth/login", json=body, headers=forged)
        assert [e.source_ip for e in await audit_events(rt, "login")] == ["203.0.113.7"]
    finally:
        await rt.close()


def test_metrics_networks_must_be_networks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a network"):
        load_settings(None, data_dir=tmp_path, metrics_networks=["monitoring"])
