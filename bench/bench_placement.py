"""Placement at 10,000 desktops on 500 hosts: the pure decision (goal p99 <= 1 ms)
and a whole session request through HTTP with the database (goal p99 <= 10 ms),
on SQLite and PostgreSQL.

The pure figure is place() on a snapshot of the whole pool (every desktop,
60 % of them busy), built once; building the snapshot from the database is part
of the HTTP figure, where requests are sent one after another so each latency
is the broker's own, not time spent queueing behind other requests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import tempfile
import time
from pathlib import Path

from bench.harness import Figure, median, percentile
from bench.httpclient import Connection
from bench.populate import populate
from bench.servers import broker, database
from broker.auth import websessions
from broker.clock import SystemClock
from broker.config import LoadIndexSettings, load_settings
from broker.domain import HostState, PoolType, WorkMode
from broker.placement.load_index import HostLoad, index_of
from broker.placement.model import (
    DesktopView,
    HostView,
    Policy,
    PoolView,
    Request,
    Snapshot,
    UserView,
    group_by_host,
)
from broker.placement.place import place
from broker.runtime import open_runtime
from broker.store.tables import User

NAME = "placement"
HOSTS, DESKTOPS = 500, 10_000


def pure(rounds: int) -> list[Figure]:
    rng = random.Random(3)
    cfg = LoadIndexSettings()
    hosts = {}
    for i in range(1, HOSTS + 1):
        sessions = rng.randint(0, 20)
        load = index_of(
            HostLoad(
                rng.uniform(0.05, 0.9),
                256 << 30,
                int(rng.uniform(0.2, 0.9) * (256 << 30)),
                sessions,
                20,
                rng.randint(0, 2),
            ),
            cfg,
        )
        hosts[i] = HostView(
            id=i,
            name=f"vhost{i:04d}",
            state=HostState.ACTIVE,
            up=True,
            load_index=load,
            sessions=sessions,
            capacity=20,
            team_sessions={"Stab": rng.randint(0, 1)},
            pool_desktops=20,
        )
    desktops = [
        DesktopView(
            id=d,
            name=f"desk{d:06d}",
            host_id=d % HOSTS + 1,
            power_state="running",
            busy=rng.random() < 0.6,
        )
        for d in range(DESKTOPS)
    ]
    snap = Snapshot(
        pool=PoolView(
            id=1, name="pool00", type=PoolType.FLOATING, max_sessions=DESKTOPS, open_sessions=6000
        ),
        hosts=hosts,
        desktops_by_host=group_by_host(desktops),
    )
    policy = Policy(load=cfg)
    now = dt.datetime.now(dt.UTC)
    users = [
        UserView(
            id=i,
            name=f"u{i}",
            department="IT",
            work_mode=WorkMode.HOME,
            team="Stab" if i % 10 == 0 else None,
        )
        for i in range(rounds)
    ]
    times = []
    for user in users:
        started = time.perf_counter()
        place(Request(user, WorkMode.HOME, now), snap, policy)
        times.append(time.perf_counter() - started)
    return [
        Figure(NAME, "pure place() p50", median(times) * 1000, "ms"),
        Figure(NAME, "pure place() p99", percentile(times, 99) * 1000, "ms", goal="<= 1"),
    ]


async def _prepare(data: Path, url: str | None, people: int) -> list[dict[str, str]]:
    settings = load_settings(None, data_dir=data, database_url=url, report_interval=3600)
    rt = await open_runtime(settings, clock=SystemClock())
    try:
        await populate(
            rt.db, hosts=HOSTS, desktops=DESKTOPS, pools=1, sessions=0, now=rt.clock.now()
        )
        headers = []
        now = rt.clock.now()
        async with rt.db.write() as s:
            for i in range(people):
                user = User(
                    name=f"req{i:05d}",
                    department="IT",
                    role="staff",
                    work_mode="home",
                    failed_logins=0,
                    disabled=False,
                    created_at=now,
                )
                s.add(user)
                await s.flush()
                web = await websessions.create(
                    s, rt.box, user.id, now, source_ip=None, user_agent="bench"
                )
                headers.append(
                    {
                        "Cookie": f"__Host-vdi_session={web.cookie_value}",
                        "X-CSRF-Token": web.csrf_token,
                    }
                )
        return headers
    finally:
        await rt.close()


async def _requests(port: int, headers: list[dict[str, str]]) -> tuple[list[float], int]:
    conn = Connection("127.0.0.1", port)
    times, failures = [], 0
    try:
        for h in headers:
            started = time.perf_counter()
            status, _ = await conn.post_json("/api/v1/sessions", {"pool": "pool00"}, h)
            times.append(time.perf_counter() - started)
            failures += status != 201
    finally:
        await conn.close()
    return times, failures


def through_http(backend: str, people: int) -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp, database(backend) as url:
        data = Path(tmp)
        headers = asyncio.run(_prepare(data, url, people + 50))
        with broker(data, url, report_interval="3600", jobs_enabled="false") as running:
            port = running.port
            asyncio.run(_requests(port, headers[:50]))  # warm-up
            times, failures = asyncio.run(_requests(port, headers[50:]))
    label = f"{backend}: POST /sessions"
    return [
        Figure(
            NAME,
            f"{label} p50",
            median(times) * 1000,
            "ms",
            note=f"{len(times)} requests one after another, {HOSTS} hosts, {DESKTOPS} desktops",
        ),
        Figure(NAME, f"{label} p99", percentile(times, 99) * 1000, "ms", goal="<= 10"),
        Figure(NAME, f"{backend}: failed requests", failures, "", goal="<= 0"),
    ]


def run(quick: bool = False) -> list[Figure]:
    people = 300 if quick else 2000
    return (
        pure(2000 if quick else 10000)
        + through_http("sqlite", people)
        + through_http("postgresql", people)
    )
