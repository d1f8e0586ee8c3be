"""Agent reports on the broker: accepted, rejected, stored; actions; host health.

Runs on SQLite and PostgreSQL against the real app over ASGI."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from agent.protocol import (
    ActionKind,
    ActionResult,
    CollectorStatus,
    DesktopReport,
    HostMetrics,
    PowerState,
    ProbeResult,
    ProbeStats,
    Report,
)
from broker import fleet
from broker.clock import FakeClock
from broker.config import Settings
from broker.domain import PoolType, Protocol, Role
from broker.hosts import actions
from broker.hosts import service as hosts
from broker.hosts.monitor import check_hosts
from broker.hosts.store import figures
from broker.jobs import Job, JobRunner
from broker.leader import leader_for
from broker.pools import service as pools
from broker.runtime import Runtime, open_runtime
from broker.store.db_errors import database_down
from broker.store.tables import AuditEvent, Desktop, Host, HostAction, Pool, Session, User
from tests.conftest import app_client, make_settings
from tests.support.fleet import FakeAgent, add_pool, ask, reporting_host, staff

URL = "/api/v1/agent/report"


def desktops(n: int, pool: str | None = "Finanzen", **overrides: Any) -> list[DesktopReport]:
    return [
        DesktopReport(
            name=f"d{i}",
            pool=pool,
            power_state=PowerState.RUNNING,
            address="127.0.0.1",
            port=40000 + i,
            probe=ProbeResult(ok=True, latency_s=0.002),
            **overrides,
        )
        for i in range(n)
    ]


def report(
    rt: Runtime,
    host: str,
    seq: int,
    *,
    items: list[DesktopReport] | None = None,
    results: list[ActionResult] | None = None,
    skew_s: float = 0.0,
    listing_failed: bool = False,
) -> Report:
    # As the agent reports a hypervisor it could not ask (agent.runner).
    failed = [CollectorStatus(name="hypervisor", success=False, duration_s=0.1, error="gone")]
    return Report(
        host=host,
        agent_version="0.1.0",
        seq=seq,
        created_at=rt.clock.now() + dt.timedelta(seconds=skew_s),
        interval_s=10,
        metrics=HostMetrics(
            cpu_utilization_ratio=0.25,
            cpus=8,
            load1=1.5,
            memory_total_bytes=64 << 30,
            memory_available_bytes=40 << 30,
            probes=ProbeStats(probes_total=10 * seq, timeouts_total=seq),
            collectors=failed if listing_failed else [],
        ),
        desktops=desktops(3) if items is None else items,
        action_results=results or [],
    )


async def send(
    client: httpx.AsyncClient, token: str | None, body: Report | bytes
) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    content = body if isinstance(body, bytes) else body.model_dump_json().encode()
    return await client.post(URL, content=content, headers=headers)


@pytest.fixture
async def host_token(runtime: Runtime) -> str:
    await pools.add(runtime, pools.NewPool("Finanzen", PoolType.FLOATING, Protocol.RDP, 10), "t")
    return await hosts.add(runtime, "vhost01", "test")


async def host_row(rt: Runtime, name: str = "vhost01") -> Host:
    async with rt.db.read() as s:
        host = await s.scalar(select(Host).where(Host.name == name))
    assert host is not None
    return host


async def count(rt: Runtime, model: type[Any], *where: Any) -> int:
    async with rt.db.read() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_a_report_is_stored(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str
) -> None:
    response = await send(client, host_token, report(runtime, "vhost01", 1))
    assert response.status_code == 200, response.text
    assert response.json() == {"actions": [], "interval_s": runtime.settings.report_interval}
    host = await host_row(runtime)
    assert host.last_seq == 1 and host.agent_version == "0.1.0"
    assert host.last_report_at == runtime.clock.now()
    assert host.metrics and host.metrics["cpus"] == 8
    async with runtime.db.read() as s:
        rows = (await s.scalars(select(Desktop).order_by(Desktop.name))).all()
    assert [(d.name, d.port, d.power_state, d.probe_ok, d.pool_id is not None) for d in rows] == [
        ("d0", 40000, "running", True, True),
        ("d1", 40001, "running", True, True),
        ("d2", 40002, "running", True, True),
    ]
    listed = await hosts.list_all(runtime)
    assert listed[0]["up"] is True and listed[0]["desktops"] == 3


async def test_inventory_changes_and_vanished_desktops(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str, clock: FakeClock
) -> None:
    await send(client, host_token, report(runtime, "vhost01", 1))
    digest = (await host_row(runtime)).inventory_hash
    clock.advance(10)
    # Same desktops, other latencies: the digest (and so storage) is unchanged.
    same = desktops(3)
    await send(client, host_token, report(runtime, "vhost01", 2, items=same))
    assert (await host_row(runtime)).inventory_hash == digest
    clock.advance(10)
    await send(client, host_token, report(runtime, "vhost01", 3, items=desktops(2)))
    assert await count(runtime, Desktop) == 3
    assert await count(runtime, Desktop, Desktop.missing.is_(True)) == 1
    gone = Desktop.missing_since == clock.now()  # its sessions end a grace after
    assert await count(runtime, Desktop, gone, Desktop.name == "d2") == 1
    clock.advance(10)
    await send(client, host_token, report(runtime, "vhost01", 4, items=desktops(3)))
    assert await count(runtime, Desktop, Desktop.missing_since.isnot(None)) == 0


async def test_desktops_left_out_while_the_hypervisor_cannot_be_asked_are_not_missing(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str, clock: FakeClock
) -> None:
    """An agent restarted while libvirt is down knows no desktops and reports
    none, its hypervisor collector failed: that is no sign they are gone, which
    would end their sessions after the grace and, a week later, forget them."""
    await send(client, host_token, report(runtime, "vhost01", 1))
    clock.advance(10)
    blind = report(runtime, "vhost01", 2, items=[], listing_failed=True)
    assert (await send(client, host_token, blind)).status_code == 200
    assert await count(runtime, Desktop, Desktop.missing.is_(True)) == 0
    # The same empty list with the listing working: they are gone.
    clock.advance(10)
    await send(client, host_token, report(runtime, "vhost01", 3, items=[]))
    assert await count(runtime, Desktop, Desktop.missing.is_(True)) == 3


async def test_vanished_desktops_are_counted_nowhere(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str, clock: FakeClock
) -> None:
    """A host that reports 2 of its 5 desktops has 2, in the host list of the CLI
    and the admin API as in the fleet view (status, portal, metrics)."""
    await send(client, host_token, report(runtime, "vhost01", 1, items=desktops(5)))
    clock.advance(10)
    await send(client, host_token, report(runtime, "vhost01", 2, items=desktops(2)))
    assert await count(runtime, Desktop, Desktop.missing.is_(True)) == 3
    assert [h["desktops"] for h in await hosts.list_all(runtime)] == [2]
    state = await fleet.read(runtime)
    assert [h.capacity for h in state.hosts.values()] == [2]
    assert [p.usable for p in state.pools.values()] == [2]
    admin = await staff(runtime, "ada", role=Role.ADMIN)
    listed = await client.get("/api/v1/admin/hosts", headers=admin)
    assert [h["desktops"] for h in listed.json()["items"]] == [2]
    page = await client.get("/admin/hosts", headers=admin)
    assert "0 von 2" in page.text


async def test_usual_reports_arriving_together_are_judged_one_by_one(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str, clock: FakeClock
) -> None:
    other_token = await hosts.add(runtime, "vhost02", "test")
    for name, token in (("vhost01", host_token), ("vhost02", other_token)):
        assert (await send(client, token, report(runtime, name, 1))).status_code == 200
    clock.advance(10)
    # Unchanged inventories: these take the grouped write, where the replayed
    # seq 2 of vhost01 must fail on its own and the others hold.
    responses = await asyncio.gather(
        send(client, host_token, report(runtime, "vhost01", 2)),
        send(client, other_token, report(runtime, "vhost02", 7)),
        send(client, host_token, report(runtime, "vhost01", 2)),
        send(client, other_token, report(runtime, "vhost02", 8)),
    )
    statuses = [r.status_code for r in responses]
    assert sorted(statuses[::2]) == [200, 409]
    assert statuses[1::2] == [200, 200]
    assert (await host_row(runtime)).last_seq == 2
    second = await host_row(runtime, "vhost02")
    assert second.last_seq == 8 and second.last_report_at == clock.now()
    assert second.metrics is not None and second.metrics["probes"]["probes_total"] == 80


@pytest.mark.parametrize("token", [None, "", "not-a-token", "x" * 43])
async def test_forged_tokens_are_refused(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str, token: str | None
) -> None:
    response = await send(client, token, report(runtime, "vhost01", 1))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert (await host_row(runtime)).last_seq is None
    assert await count(runtime, AuditEvent, AuditEvent.event == "agent_report_rejected") == 1


async def test_a_flood_of_forged_reports_is_cut_off_unaudited(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str, clock: FakeClock
) -> None:
    limit = runtime.settings.report_reject_limit
    statuses = []
    for i in range(limit + 3):
        response = await send(client, f"forged-{i}", report(runtime, "vhost01", 1))
        statuses.append(response.status_code)
    assert statuses == [401] * limit + [429] * 3
    assert response.json()["error"] == "rate_limited"
    assert int(response.headers["retry-after"]) >= 1
    assert await count(runtime, AuditEvent, AuditEvent.event == "agent_report_rejected") == limit
    # The real agent behind the same address still reports.
    assert (await send(client, host_token, report(runtime, "vhost01", 1))).status_code == 200
    clock.advance(runtime.settings.report_reject_window_s)
    assert (await send(client, "forged", report(runtime, "vhost01", 2))).status_code == 401


async def test_a_token_reports_only_for_its_own_host(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str
) -> None:
    await hosts.add(runtime, "vhost02", "test")
    response = await send(client, host_token, report(runtime, "vhost02", 1))
    assert response.status_code == 403
    assert response.json()["error"] == "wrong_host"
    for name in ("vhost01", "vhost02"):
        assert (await host_row(runtime, name)).last_seq is None
    assert await count(runtime, Desktop) == 0
    async with runtime.db.read() as s:
        event = (
            await s.scalars(select(AuditEvent).where(AuditEvent.event == "agent_report_rejected"))
        ).one()
    assert event.actor == "vhost01"
    assert event.detail == {"reason": "foreign_host", "claimed": "vhost02"}


async def test_replayed_and_older_reports_are_409_and_change_nothing(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str, clock: FakeClock
) -> None:
    assert (await send(client, host_token, report(runtime, "vhost01", 5))).status_code == 200
    before = await host_row(runtime)
    clock.advance(10)
    for seq in (5, 4, 0):
        changed = report(runtime, "vhost01", seq, items=desktops(1))
        response = await send(client, host_token, changed)
        assert response.status_code == 409
        assert response.json()["error"] == "stale_seq"
        assert response.json()["last_seq"] == 5
    after = await host_row(runtime)
    assert (after.last_seq, after.last_report_at, after.metrics) == (
        before.last_seq,
        before.last_report_at,
        before.metrics,
    )
    assert await count(runtime, Desktop, Desktop.missing.is_(True)) == 0


async def test_refused_reports_are_said_in_the_brokers_log(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Only the agent heard why its reports were refused; at the broker the host
    just went down. Now the broker's log names the host and the cause, once in a
    while rather than every report."""
    assert (await send(client, host_token, report(runtime, "vhost01", 5))).status_code == 200
    with caplog.at_level(logging.WARNING, logger="broker.hosts.ingest"):
        for _ in range(3):  # a second agent with this token, or a restored state
            stale = await send(client, host_token, report(runtime, "vhost01", 3))
            assert stale.status_code == 409
            skewed = await send(client, host_token, report(runtime, "vhost01", 6, skew_s=-600))
            assert skewed.status_code == 400
    said = [r.getMessage() for r in caplog.records if r.name == "broker.hosts.ingest"]
    assert len(said) == 2, said
    assert "host vhost01: report seq 3 refused" in said[0] and "token" in said[0]
    assert "host vhost01: report refused, its clock is -600 s off" in said[1]
    assert "NTP" in said[1]


@pytest.mark.parametrize("skew", [-301.0, 301.0, 86400.0])
async def test_reports_off_the_clock_are_400(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str, skew: float
) -> None:
    response = await send(client, host_token, report(runtime, "vhost01", 1, skew_s=skew))
    assert response.status_code == 400
    assert response.json()["error"] == "clock_skew"
    assert (await host_row(runtime)).last_seq is None


async def test_oversized_report_is_413(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str
) -> None:
    response = await send(client, host_token, b"{" + b" " * (1024 * 1024) + b"}")
    assert response.status_code == 413
    assert (await host_row(runtime)).last_seq is None


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(seq=-1),
        lambda d: d.update(version=99),
        lambda d: d.update(extra="field"),
        lambda d: d["desktops"][0].update(address="db.internal"),
        lambda d: d["desktops"][0].update(port=70000),
        lambda d: d["desktops"][0].update(name="../../etc"),
        lambda d: d["metrics"].update(cpu_utilization_ratio=1.5),
        lambda d: d.update(created_at="2026-03-02T09:00:05"),
        lambda d: d.pop("host"),
        # More than the database's integers hold: bad input, not a 500.
        lambda d: d["metrics"].update(memory_total_bytes=2**63),
        lambda d: d["metrics"]["probes"].update(probes_total=10**20),
        lambda d: d["metrics"].update(session_capacity=2**31),
        # desktops.connections is a 32-bit column.
        lambda d: d["desktops"][0].update(connections=2**31),
        # An address with a zone: meaningless to the gateway, and longer than the column.
        lambda d: d["desktops"][0].update(address="fe80::1%" + "x" * 80),
        lambda d: d["desktops"][0].update(address="fe80::1%eth0"),
        # UTC outside the calendar.
        lambda d: d.update(created_at="0001-01-01T00:00:00+01:00"),
        lambda d: d.update(created_at="9999-12-31T23:59:59-01:00"),
        # Control characters in free text: PostgreSQL refuses NUL, labels and logs
        # must not carry any.
        lambda d: d.update(agent_version="1.0\u0000x"),
        lambda d: d.update(agent_version="1.0\n"),
        lambda d: d.update(agent_version="1.0\u009b"),
        lambda d: d["desktops"][0].update(pool="Fin\u0000anzen"),
        lambda d: d["metrics"].update(
            collectors=[{"name": "cpu", "success": False, "duration_s": 0, "error": "bad\u0000"}]
        ),
        lambda d: d["metrics"].update(
            collectors=[{"name": "c\tpu", "success": True, "duration_s": 0}]
        ),
        lambda d: d["metrics"].update(
            disks=[{"mount": "/srv\u0000", "total_bytes": 1, "used_bytes": 1, "free_bytes": 0}]
        ),
        lambda d: d.update(action_results=[{"id": "a\u0000", "ok": True}]),
        lambda d: d.update(action_results=[{"id": "a", "ok": False, "error": "x\ny"}]),
        # Floats are finite (json.dumps writes Infinity and NaN).
        lambda d: d["metrics"].update(load1=float("inf")),
        lambda d: d["metrics"].update(load15=float("inf")),
        lambda d: d["metrics"].update(load5=float("nan")),
        lambda d: d["metrics"]["probes"].update(latency_mean_s=float("inf")),
        lambda d: d["desktops"][0].update(probe={"ok": True, "latency_s": float("inf")}),
        lambda d: d["metrics"].update(
            collectors=[{"name": "cpu", "success": True, "duration_s": float("inf")}]
        ),
        # Numbers as JSON writes them, not as pydantic could read them: true is
        # not the port 1, nor "2" a sequence number, nor 3.0 a count.
        lambda d: d["desktops"][0].update(port=True),
        lambda d: d.update(seq="2"),
        lambda d: d["metrics"].update(memory_total_bytes=3.0),
        lambda d: d["metrics"].update(cpu_utilization_ratio=True),
        # Contradicting entries for one thing.
        lambda d: d["desktops"].append({**d["desktops"][0], "power_state": "stopped"}),
        lambda d: d.update(
            action_results=[{"id": "a", "ok": True}, {"id": "a", "ok": False, "error": "no"}]
        ),
    ],
)
async def test_malformed_reports_are_422(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str, mutate: Any
) -> None:
    body = json.loads(report(runtime, "vhost01", 1).model_dump_json())
    mutate(body)
    response = await send(client, host_token, json.dumps(body).encode())
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert (await host_row(runtime)).last_seq is None
    assert await count(runtime, Desktop) == 0


async def test_not_json_is_422(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str
) -> None:
    assert (await send(client, host_token, b"\x00\xffnope")).status_code == 422


async def test_a_duplicate_desktop_name_is_422_and_changes_nothing(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str, clock: FakeClock
) -> None:
    assert (await send(client, host_token, report(runtime, "vhost01", 1))).status_code == 200
    clock.advance(10)
    # d0 twice, saying two different things; a new name twice (two INSERTs of one
    # name would meet the table's UNIQUE(host_id, name): a 500).
    twice = {"name": "d0", "power_state": "stopped"}
    new = {"name": "n1", "power_state": "running"}
    for seq, extra in ((2, [twice]), (3, [new, new])):
        body = json.loads(report(runtime, "vhost01", seq).model_dump_json())
        body["desktops"] += extra
        response = await send(client, host_token, json.dumps(body).encode())
        assert response.status_code == 422, response.text
        assert response.json()["details"][0]["field"] == "desktops"
    assert (await host_row(runtime)).last_seq == 1
    async with runtime.db.read() as s:
        rows = (await s.execute(select(Desktop.name, Desktop.power_state))).all()
    assert sorted(rows) == [("d0", "running"), ("d1", "running"), ("d2", "running")]


@asynccontextmanager
async def replica(
    settings: Settings, clock: FakeClock
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    """Another broker on the same database, with a process state of its own."""
    rt = await open_runtime(settings, clock=clock)
    try:
        async with app_client(rt) as c:
            yield rt, c
    finally:
        await rt.close()


async def pools_of_desktops(rt: Runtime) -> dict[str, str | None]:
    async with rt.db.read() as s:
        rows = (
            await s.execute(
                select(Desktop.name, Pool.name).outerjoin(Pool, Pool.id == Desktop.pool_id)
            )
        ).all()
    return dict(rows)


async def test_desktops_reported_before_their_pool_exists_join_it_once_it_is_added(
    runtime: Runtime, client: httpx.AsyncClient, settings: Settings, clock: FakeClock
) -> None:
    token = await hosts.add(runtime, "vhost01", "test")
    items = desktops(2, pool="NeuPool")
    for seq in (1, 2):  # the second takes the usual path: the inventory is unchanged
        assert (await send(client, token, report(runtime, "vhost01", seq, items=items))).is_success
        clock.advance(10)
    assert await pools_of_desktops(runtime) == {"d0": None, "d1": None}
    # The pool is added on another replica (or by the CLI), while this broker
    # keeps taking the host's reports.
    async with replica(settings, clock) as (other, _):
        await pools.add(other, pools.NewPool("NeuPool", PoolType.FLOATING, Protocol.RDP, 5), "t")
    assert (await host_row(runtime)).inventory_hash is None
    assert (await send(client, token, report(runtime, "vhost01", 3, items=items))).is_success
    assert await pools_of_desktops(runtime) == {"d0": "NeuPool", "d1": "NeuPool"}
    # And the usual path is back for the reports after it.
    digest = (await host_row(runtime)).inventory_hash
    assert digest is not None
    clock.advance(10)
    assert (await send(client, token, report(runtime, "vhost01", 4, items=items))).is_success
    assert (await host_row(runtime)).inventory_hash == digest


async def test_new_pool_naming_rules_place_desktops_at_the_next_report(
    runtime: Runtime,
    client: httpx.AsyncClient,
    host_token: str,
    tmp_path: Path,
    db_url: str,
    clock: FakeClock,
) -> None:
    items = desktops(2, pool=None)
    assert (await send(client, host_token, report(runtime, "vhost01", 1, items=items))).is_success
    assert await pools_of_desktops(runtime) == {"d0": None, "d1": None}
    # A broker restarted (or a replica started) with a rule for these names.
    ruled = make_settings(tmp_path, db_url, pool_rules={"^d[0-9]+$": "Finanzen"})
    clock.advance(10)
    async with replica(ruled, clock) as (_, other):
        response = await send(other, host_token, report(runtime, "vhost01", 2, items=items))
        assert response.is_success
    assert await pools_of_desktops(runtime) == {"d0": "Finanzen", "d1": "Finanzen"}


async def test_unchanged_connection_counts_are_not_written_again(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str, clock: FakeClock
) -> None:
    seen = desktops(2, connections=1)
    assert (await send(client, host_token, report(runtime, "vhost01", 1, items=seen))).is_success
    first = clock.now()
    clock.advance(10)
    # d1 changes, d0 does not: only d1 is written.
    changed = [seen[0], seen[1].model_copy(update={"connections": 2})]
    assert (await send(client, host_token, report(runtime, "vhost01", 2, items=changed))).is_success
    async with runtime.db.read() as s:
        rows = dict((await s.execute(select(Desktop.name, Desktop.updated_at))).all())
    assert rows == {"d0": first, "d1": clock.now()}


async def test_a_bad_report_among_concurrent_ones_fails_alone(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str, clock: FakeClock
) -> None:
    """NUL in the agent version: on PostgreSQL it once reached the database inside
    a batch of usual reports and failed them all as "database not reachable"."""
    tokens = {"vhost01": host_token}
    for name in ("vhost02", "vhost03", "vhost04"):
        tokens[name] = await hosts.add(runtime, name, "test")
    for name, token in tokens.items():
        assert (await send(client, token, report(runtime, name, 1))).is_success
    for seq in (2, 3, 4):
        clock.advance(10)
        bodies = {}
        for name in tokens:
            body = json.loads(report(runtime, name, seq).model_dump_json())
            if name == "vhost01":
                body["agent_version"] = "1.0\u0000x"
            bodies[name] = json.dumps(body).encode()
        responses = await asyncio.gather(
            *(send(client, tokens[name], bodies[name]) for name in tokens)
        )
        assert [r.status_code for r in responses] == [422, 200, 200, 200]
    assert (await host_row(runtime)).last_seq == 1
    for name in ("vhost02", "vhost03", "vhost04"):
        row = await host_row(runtime, name)
        assert (row.last_seq, row.agent_version) == (4, "0.1.0")


async def test_a_report_the_database_refuses_fails_alone_in_its_batch(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str, clock: FakeClock
) -> None:
    """Should a value the protocol lets through be one the database refuses, the
    batch of usual reports it rides in is stored again report by report: only
    that report fails (a list is what neither driver can send as text)."""
    tokens = {"vhost01": host_token}
    for name in ("vhost02", "vhost03"):
        tokens[name] = await hosts.add(runtime, name, "test")
    for name, token in tokens.items():
        assert (await send(client, token, report(runtime, name, 1))).is_success
    clock.advance(10)
    rows = {name: await host_row(runtime, name) for name in tokens}
    metrics = HostMetrics()

    def usual(name: str, agent_version: object) -> dict[str, Any]:
        row = rows[name]
        return {
            "host_id": row.id,
            "presented_token": row.token_hash,
            "reporting_host": name,
            "unchanged_inventory": row.inventory_hash,
            "inventory_hash": row.inventory_hash,
            "seq": 2,
            "now": clock.now(),
            "agent_version": agent_version,
            "metrics": metrics.model_dump_json(exclude_none=True),
            **figures(metrics),
        }

    outcomes = await asyncio.gather(
        runtime.report_batcher.store(usual("vhost01", "0.2.0")),
        runtime.report_batcher.store(usual("vhost02", ["not", "text"])),
        runtime.report_batcher.store(usual("vhost03", "0.2.0")),
        return_exceptions=True,
    )
    assert outcomes[0] == 0 and outcomes[2] == 0  # stored, no actions pending
    assert isinstance(outcomes[1], DBAPIError) and not database_down(outcomes[1])
    versions = {name: (await host_row(runtime, name)).agent_version for name in tokens}
    assert versions == {"vhost01": "0.2.0", "vhost02": "0.1.0", "vhost03": "0.2.0"}


async def test_action_round_trip_at_least_once_and_idempotent(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str, clock: FakeClock
) -> None:
    await send(client, host_token, report(runtime, "vhost01", 1))
    async with runtime.db.write_conn() as conn:
        action_id = await actions.queue(
            conn,
            clock.now(),
            host_id=(await host_row(runtime)).id,
            desktop_id=None,
            desktop_name="d1",
            kind=ActionKind.RESET,
            reason="recycle",
        )
    expected = [{"id": action_id, "kind": "reset", "desktop": "d1"}]
    first = await send(client, host_token, report(runtime, "vhost01", 2))
    assert first.json()["actions"] == expected
    # No result yet (the response was lost, say): the action comes again.
    second = await send(client, host_token, report(runtime, "vhost01", 3))
    assert second.json()["actions"] == expected
    done = ActionResult(id=action_id, ok=True, power_state=PowerState.RUNNING)
    third = await send(client, host_token, report(runtime, "vhost01", 4, results=[done]))
    assert third.json()["actions"] == []
    # The same result again, and one for an action that does not exist: ignored.
    ghost = ActionResult(id=uuid.uuid4().hex, ok=False, error="no such action")
    fourth = await send(client, host_token, report(runtime, "vhost01", 5, results=[done, ghost]))
    assert fourth.status_code == 200 and fourth.json()["actions"] == []
    async with runtime.db.read() as s:
        action = await s.get(HostAction, action_id)
    assert action is not None
    assert (action.state, action.deliveries, action.finished_at) == ("done", 2, clock.now())
    assert (await host_row(runtime)).pending_actions == 0


async def test_silent_host_goes_down_and_its_sessions_are_lost_after_grace(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str, clock: FakeClock
) -> None:
    await send(client, host_token, report(runtime, "vhost01", 1))
    async with runtime.db.write() as s:
        user = User(
            name="maria",
            department="Finanzen",
            role="staff",
            work_mode="home",
            failed_logins=0,
            disabled=False,
            created_at=clock.now(),
        )
        s.add(user)
        await s.flush()
        desktop = await s.scalar(select(Desktop).where(Desktop.name == "d0"))
        assert desktop is not None and desktop.pool_id is not None
        s.add(
            Session(
                id=str(uuid.uuid4()),
                user_id=user.id,
                pool_id=desktop.pool_id,
                desktop_id=desktop.id,
                state="active",
                work_mode="home",
                created_at=clock.now(),
            )
        )
    interval = runtime.settings.report_interval
    clock.advance(interval * 2)
    await check_hosts(runtime)
    assert (await host_row(runtime)).down_since is None
    clock.advance(interval + 1)
    await check_hosts(runtime)
    assert (await host_row(runtime)).down_since == clock.now()
    assert (await hosts.list_all(runtime))[0]["up"] is False
    assert await count(runtime, AuditEvent, AuditEvent.event == "host_down") == 1
    await check_hosts(runtime)  # once only
    assert await count(runtime, AuditEvent, AuditEvent.event == "host_down") == 1
    assert await count(runtime, Session, Session.state == "active") == 1
    clock.advance(runtime.settings.host_lost_grace_s + 1)
    await check_hosts(runtime)
    async with runtime.db.read() as s:
        session = (await s.scalars(select(Session))).one()
    assert (session.state, session.end_reason) == ("ended", "host_lost")
    # The host comes back.
    assert (await send(client, host_token, report(runtime, "vhost01", 2))).status_code == 200
    assert (await host_row(runtime)).down_since is None
    assert (await hosts.list_all(runtime))[0]["up"] is True


def host_health_runner(runtime: Runtime) -> JobRunner:
    """The job runner of a broker with only the host health job, due every round."""
    return JobRunner(
        runtime,
        [Job("host health", check_hosts, 0.0)],
        leader_for(runtime.db, runtime.settings.data_dir),
        1.0,
    )


async def test_hosts_are_not_called_down_for_the_brokers_own_outage(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str, clock: FakeClock
) -> None:
    """While the brokers were stopped or the database was away, no report could be
    stored: when the jobs run again, each host first gets its usual window to report."""
    await send(client, host_token, report(runtime, "vhost01", 1))
    interval = runtime.settings.report_interval
    window = interval * runtime.settings.host_down_after_missed
    clock.advance(window * 4)  # the outage: the agent's reports were refused meanwhile
    runner = host_health_runner(runtime)
    try:
        await runner.run_due()  # this broker runs the jobs again
        assert runner.leading
        clock.advance(window - 1)
        await runner.run_due()
        assert (await host_row(runtime)).down_since is None
        assert await count(runtime, AuditEvent, AuditEvent.event == "host_down") == 0
        # A host that reports within its window was never down ...
        assert (await send(client, host_token, report(runtime, "vhost01", 2))).status_code == 200
        clock.advance(window - 1)
        await runner.run_due()
        assert (await host_row(runtime)).down_since is None
        # ... and one silent for a whole window since is, as usual.
        clock.advance(2)
        await runner.run_due()
        assert (await host_row(runtime)).down_since == clock.now()
        assert await count(runtime, AuditEvent, AuditEvent.event == "host_down") == 1
    finally:
        await runner.stop()


async def test_hosts_are_not_called_down_after_an_outage_the_jobs_lock_outlived(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str, clock: FakeClock
) -> None:
    """The jobs lock need not be lost with the database: a network partition or a
    locked SQLite file hangs or fails the rounds while the leader keeps its lock
    (PostgreSQL's session or the lock file). Reports could not be stored either,
    so after such a gap each host gets its window too, as after a new lead."""
    interval = runtime.settings.report_interval
    window = interval * runtime.settings.host_down_after_missed
    runner = host_health_runner(runtime)
    try:
        for seq in (1, 2, 3):  # leading and watching as usual
            sent = await send(client, host_token, report(runtime, "vhost01", seq))
            assert sent.status_code == 200
            await runner.run_due()
            clock.advance(interval)
        assert runner.leading
        clock.advance(window * 4)  # no round got through, nor any report
        await runner.run_due()
        assert runner.leading  # the lock was kept all along
        assert (await host_row(runtime)).down_since is None
        assert await count(runtime, AuditEvent, AuditEvent.event == "host_down") == 0
        # Rounds get through again: a host silent for its window since is down.
        step = runtime.settings.job_interval_s
        for _ in range(int(window // step) - 1):
            clock.advance(step)
            await runner.run_due()
            assert (await host_row(runtime)).down_since is None
        clock.advance(step)
        await runner.run_due()
        assert (await host_row(runtime)).down_since == clock.now()
    finally:
        await runner.stop()


async def test_hosts_go_down_where_the_rounds_are_further_apart_than_the_window(
    tmp_path: Path, db_url: str, clock: FakeClock
) -> None:
    """A report interval of 1 s makes the down-window (3 s) shorter than the jobs'
    own interval (5 s): rounds that simply follow each other are no outage."""
    rt = await open_runtime(make_settings(tmp_path, db_url, report_interval=1.0), clock=clock)
    runner = JobRunner(
        rt, [Job("host health", check_hosts, 0.0)], leader_for(rt.db, rt.settings.data_dir), 1.0
    )
    try:
        await pools.add(rt, pools.NewPool("Finanzen", PoolType.FLOATING, Protocol.RDP, 10), "t")
        token = await hosts.add(rt, "vhost01", "test")
        async with app_client(rt) as client:
            assert (await send(client, token, report(rt, "vhost01", 1))).status_code == 200
        for _ in range(3):
            await runner.run_due()
            clock.advance(rt.settings.job_interval_s)
        await runner.run_due()
        assert (await host_row(rt)).down_since is not None
    finally:
        await runner.stop()
        await rt.close()


async def test_admin_host_api(runtime: Runtime, client: httpx.AsyncClient, host_token: str) -> None:
    from broker.domain import Role
    from tests.support.accounts import add_user, code_now, login

    secret = await add_user(runtime, "chef", department="IT", role=Role.ADMIN)
    csrf = (await login(client, "chef", code=code_now(runtime, secret or ""))).json()["csrf_token"]
    listed = await client.get("/api/v1/admin/hosts")
    assert [h["name"] for h in listed.json()["items"]] == ["vhost01"]
    drained = await client.post("/api/v1/admin/hosts/vhost01/drain", headers={"X-CSRF-Token": csrf})
    assert drained.json() == {"name": "vhost01", "state": "draining"}
    missing = await client.post("/api/v1/admin/hosts/nope/drain", headers={"X-CSRF-Token": csrf})
    assert missing.status_code == 404
    no_csrf = await client.post("/api/v1/admin/hosts/vhost01/activate")
    assert no_csrf.status_code == 403
    assert (await host_row(runtime)).state == "draining"


async def test_report_endpoint_answers_other_methods_and_keeps_headers(
    runtime: Runtime, client: httpx.AsyncClient, host_token: str
) -> None:
    wrong = await client.get(URL)
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"
    ok = await send(client, host_token, report(runtime, "vhost01", 1))
    assert ok.headers["x-content-type-options"] == "nosniff"
    assert ok.headers["content-type"] == "application/json"


async def moved(agent: FakeAgent, desktop: str, pool: str) -> None:
    """The host's administrator re-labels a VM (libvirt metadata, --pool, pool_rules)."""
    agent.desktops[desktop] = agent.desktops[desktop].model_copy(update={"pool": pool})
    await agent.report()


async def test_a_persistent_desktop_moved_to_a_floating_pool_loses_owner_and_logon(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_pool(runtime, "Persoenlich", type=PoolType.PERSISTENT)
    await add_pool(runtime, "Finanzen")
    agent = await reporting_host(runtime, client, 1, pool="Persoenlich")
    alice = await staff(runtime, "alice")
    mine = (await ask(client, alice, pool="Persoenlich")).json()["session"]
    await client.delete(f"/api/v1/sessions/{mine['id']}", headers=alice)  # her logon stays
    await moved(agent, mine["desktop"], "Finanzen")
    async with runtime.db.read() as s:
        desktop = (await s.scalars(select(Desktop))).one()
        action = (await s.scalars(select(HostAction))).one()
        event = (
            await s.scalars(select(AuditEvent).where(AuditEvent.event == "desktop_moved"))
        ).one()
    assert (desktop.assigned_user_id, desktop.needs_reset) == (None, True)
    assert (action.kind, action.reason, action.desktop_name) == (
        "reset",
        "pool_move",
        "vhost01-d000",
    )
    assert event.username == "alice" and event.actor == "vhost01"
    assert event.detail == {
        "desktop": "vhost01-d000",
        "host": "vhost01",
        "from_pool": "Persoenlich",
        "to_pool": "Finanzen",
        "reset": True,
    }
    # Nobody gets it with alice's logon on it; once reset, anybody may.
    bob = await staff(runtime, "bob")
    assert (await ask(client, bob)).json()["error"] == "capacity_full"
    assert [a["kind"] for a in await agent.obey()] == ["reset"]
    assert (await ask(client, bob)).json()["session"]["desktop"] == "vhost01-d000"


async def test_a_used_floating_desktop_moved_to_a_persistent_pool_is_still_reset_first(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_pool(runtime, "Finanzen")
    await add_pool(runtime, "Persoenlich", type=PoolType.PERSISTENT)
    agent = await reporting_host(runtime, client, 1)
    maria = await staff(runtime, "maria")
    used = (await ask(client, maria)).json()["session"]
    await client.delete(f"/api/v1/sessions/{used['id']}", headers=maria)  # its reset is queued
    await moved(agent, used["desktop"], "Persoenlich")
    jan = await staff(runtime, "jan")
    waiting = await ask(client, jan, pool="Persoenlich")
    assert waiting.json()["error"] == "capacity_full"  # maria's logon may be on it still
    assert [a["kind"] for a in await agent.obey()] == ["reset"]  # one reset, not two
    assert (await ask(client, jan, pool="Persoenlich")).status_code == 201


async def test_a_stopped_desktop_moves_without_a_reset(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_pool(runtime, "Persoenlich", type=PoolType.PERSISTENT)
    await add_pool(runtime, "Finanzen")
    agent = await reporting_host(runtime, client, 1, pool="Persoenlich", power=PowerState.STOPPED)
    await staff(runtime, "alice")
    await pools.assign_desktop(runtime, "Persoenlich", "alice", None, "test")
    await moved(agent, "vhost01-d000", "Finanzen")
    async with runtime.db.read() as s:
        desktop = (await s.scalars(select(Desktop))).one()
        assert (await s.scalars(select(HostAction))).all() == []
    # A stopped guest holds no logon: the desktop is free for the next, who starts it.
    assert (desktop.assigned_user_id, desktop.needs_reset) == (None, False)
    assert (await ask(client, await staff(runtime, "bob"))).status_code == 202
