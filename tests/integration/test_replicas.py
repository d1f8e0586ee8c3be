"""Several `vdi-broker serve` replicas on one PostgreSQL database.

Web sessions, tickets, TOTP replay state and lockout counters live in the
database, so any replica can answer any request; background jobs run on exactly
one replica (the advisory-lock leader) and move when it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from broker.clock import FakeClock, SystemClock
from broker.config import load_settings
from broker.domain import Role
from broker.gateway.reasons import CANNOT_CHECK
from broker.runtime import open_runtime
from broker.store.tables import AuditEvent, Session
from tests.support.accounts import PASSWORD, add_user
from tests.support.fleet import staff
from tests.support.gateway import echo, gateway_rig, gateway_settings, run_ssh, ssh_forward
from tests.support.processes import (
    clean_env,
    free_port,
    start_agent,
    start_broker,
    stop,
    until,
    vdi_broker,
)
from tests.support.totp import oathtool_code

pytestmark = pytest.mark.postgres

JOBS = {"report_interval": "1", "job_interval_s": "1", "host_down_after_missed": "3"}


@pytest.fixture
def pg_url(pg_database: str) -> str:
    from tests.conftest import _truncate
    from tests.support import postgres

    asyncio.run(_truncate(pg_database))
    return postgres.url(pg_database)


@pytest.fixture
def replicas(tmp_path: Path, pg_url: str) -> Iterator[list[tuple[subprocess.Popen[bytes], str]]]:
    running = [start_broker(tmp_path / "data", pg_url, **JOBS) for _ in range(2)]
    try:
        yield running
    finally:
        for proc, _ in running:
            stop(proc)


async def make_user(tmp_path: Path, pg_url: str, name: str = "maria") -> str:
    rt = await open_runtime(
        load_settings(None, data_dir=tmp_path / "data", database_url=pg_url), clock=SystemClock()
    )
    try:
        secret = await add_user(rt, name)
        assert secret
        return secret
    finally:
        await rt.close()


def pool_and_agent(
    tmp_path: Path, env: dict[str, str], base: str, *, licences: int, desktops: int
) -> subprocess.Popen[bytes]:
    """Pool Finanzen and a host vhost01 whose real agent reports `desktops` to `base`."""
    added = vdi_broker(
        "pool",
        "add",
        "Finanzen",
        "--type",
        "floating",
        "--protocol",
        "rdp",
        "--max-sessions",
        str(licences),
        env=env,
    )
    assert added.returncode == 0, added.stderr
    write_token(tmp_path / "token", env)
    return start_agent(
        base,
        tmp_path / "token",
        tmp_path / "agent",
        "vhost01",
        "--simulated-desktops",
        str(desktops),
        "--pool",
        "Finanzen",
    )


def write_token(path: Path, env: dict[str, str], host: str = "vhost01") -> None:
    added = vdi_broker("host", "add", host, "--json", env=env)
    assert added.returncode == 0, added.stderr
    path.write_text(json.loads(added.stdout)["token"] + "\n")
    path.chmod(0o600)


def roles(running: list[tuple[subprocess.Popen[bytes], str]]) -> list[str]:
    out = []
    for proc, base in running:
        if proc.poll() is not None:
            out.append("dead")
            continue
        try:
            out.append(httpx.get(f"{base}/healthz", timeout=2).json()["jobs"])
        except httpx.HTTPError:
            out.append("unreachable")
    return out


@pytest.fixture
def gateway_replicas(
    tmp_path: Path, pg_url: str
) -> Iterator[list[tuple[subprocess.Popen[bytes], str, int]]]:
    """Two replicas with their SSH gateways on (the demo's desktops are on loopback)."""
    running = []
    try:
        for _ in range(2):
            port = free_port()
            proc, base = start_broker(
                tmp_path / "data",
                pg_url,
                gateway_enabled="true",
                gateway_port=str(port),
                gateway_allow_loopback="true",
                **JOBS,
            )
            running.append((proc, base, port))
        yield running
    finally:
        for proc, _, _ in running:
            stop(proc)


async def test_requests_alternate_between_replicas(
    tmp_path: Path,
    pg_url: str,
    gateway_replicas: list[tuple[subprocess.Popen[bytes], str, int]],
) -> None:
    (_, a, gateway_a), (_, b, _) = gateway_replicas
    secret = await make_user(tmp_path, pg_url)
    env = clean_env({"VDI_DATA_DIR": str(tmp_path / "data"), "VDI_DATABASE_URL": pg_url})
    agent = pool_and_agent(tmp_path, env, a, licences=5, desktops=2)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            # Log in on A ...
            logged = await client.post(
                f"{a}/api/v1/auth/login",
                json={
                    "username": "maria",
                    "password": PASSWORD,
                    "code": oathtool_code(secret, dt.datetime.now(dt.UTC)),
                },
            )
            assert logged.status_code == 200, logged.text
            cookie = logged.headers["set-cookie"].split(";")[0]
            headers = {"cookie": cookie, "X-CSRF-Token": logged.json()["csrf_token"]}
            # ... the session is known on B, and B assigns the desktop ...
            assert (await client.get(f"{b}/api/v1/me", headers=headers)).status_code == 200
            deadline = time.monotonic() + 20
            while True:
                got = await client.post(
                    f"{b}/api/v1/sessions", json={"pool": "Finanzen"}, headers=headers
                )
                if got.status_code == 201 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.3)
            assert got.status_code == 201, got.text
            sid = got.json()["session"]["id"]
            # ... and the tunnel goes through A's gateway with the ticket B issued.
            connect = got.json()["connect"]
            async with ssh_forward(
                connect["ticket"],
                gateway_a,
                "maria",
                f"{connect['desktop_address']}:{connect['desktop_port']}",
            ) as forward:
                payload = os.urandom(256 * 1024)
                assert await echo(forward.local_port, payload) == payload
            # A sees the session, and a log-out on A ends the web session on B too.
            seen = await client.get(f"{a}/api/v1/sessions/{sid}", headers=headers)
            assert seen.json()["session"]["state"] in ("active", "disconnected")
            assert (
                await client.post(f"{a}/api/v1/auth/logout", headers=headers)
            ).status_code == 200
            assert (await client.get(f"{b}/api/v1/me", headers=headers)).status_code == 401
            # Lockout counts across replicas: five failures spread over A and B.
            for i in range(5):
                base = (a, b)[i % 2]
                wrong = await client.post(
                    f"{base}/api/v1/auth/login",
                    json={"username": "maria", "password": "wrong password!", "code": "123456"},
                )
                assert wrong.status_code == 401
            locked = await client.post(
                f"{b}/api/v1/auth/login",
                json={
                    "username": "maria",
                    "password": PASSWORD,
                    "code": oathtool_code(secret, dt.datetime.now(dt.UTC)),
                },
            )
            assert locked.status_code == 423
    finally:
        stop(agent)


async def test_jobs_run_once_and_move_when_the_leader_dies(
    tmp_path: Path, pg_url: str, replicas: list[tuple[subprocess.Popen[bytes], str]]
) -> None:
    assert sorted(
        until(
            lambda: sorted(roles(replicas)) == ["leader", "standby"] and roles(replicas),
            15,
            "one leader, one standby",
        )
    ) == ["leader", "standby"]
    env = clean_env(
        {
            "VDI_DATA_DIR": str(tmp_path / "data"),
            "VDI_DATABASE_URL": pg_url,
            **{f"VDI_{k.upper()}": v for k, v in JOBS.items()},
        }
    )
    write_token(tmp_path / "token", env)
    agent = start_agent(
        replicas[0][1],
        tmp_path / "token",
        tmp_path / "agent",
        "vhost01",
        "--simulated-desktops",
        "1",
    )
    until(
        lambda: json.loads(vdi_broker("host", "list", "--json", env=env).stdout)[0]["up"],
        20,
        "host up",
    )
    stop(agent)

    async def host_down_events() -> int:
        rt = await open_runtime(
            load_settings(None, data_dir=tmp_path / "data", database_url=pg_url),
            clock=SystemClock(),
        )
        try:
            async with rt.db.read() as s:
                return int(
                    await s.scalar(
                        select(func.count())
                        .select_from(AuditEvent)
                        .where(AuditEvent.event == "host_down")
                    )
                    or 0
                )
        finally:
            await rt.close()

    deadline = time.monotonic() + 20
    while await host_down_events() == 0:
        assert time.monotonic() < deadline, "no replica noticed the silent host"
        await asyncio.sleep(0.3)
    await asyncio.sleep(3)  # both replicas had several rounds: still one event
    assert await host_down_events() == 1

    leader = next(i for i, r in enumerate(roles(replicas)) if r == "leader")
    other = 1 - leader
    replicas[leader][0].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    # Polled finely: the take-over time is measured through this wait.
    until(lambda: roles(replicas)[other] == "leader", 10, "the standby takes over", step=0.1)
    took = time.monotonic() - killed
    interval = float(JOBS["job_interval_s"])
    assert took <= 2 * interval, f"take-over took {took:.2f} s"


@pytest.fixture
def private_pg() -> Iterator[Any]:
    from tests.support.private_postgres import PrivatePostgres

    pg = PrivatePostgres()
    pg.start()
    try:
        yield pg
    finally:
        pg.destroy()


async def test_database_outage_gives_503_never_500_and_recovers(
    tmp_path: Path, private_pg: Any
) -> None:
    url = private_pg.url
    env = clean_env(
        {
            "VDI_DATA_DIR": str(tmp_path / "data"),
            "VDI_DATABASE_URL": url,
            **{f"VDI_{k.upper()}": v for k, v in JOBS.items()},
        }
    )
    rt = await open_runtime(
        load_settings(None, data_dir=tmp_path / "data", database_url=url), clock=SystemClock()
    )
    try:
        people = [await staff(rt, f"user{i:02d}") for i in range(20)]
    finally:
        await rt.close()
    a, base_a = start_broker(tmp_path / "data", url, **JOBS)
    b, base_b = start_broker(tmp_path / "data", url, **JOBS)
    agent = pool_and_agent(tmp_path, env, base_a, licences=50, desktops=25)
    statuses: list[int] = []
    pages: list[int] = []  # a browser's typo: the not-found page, outage or not
    assigned: dict[int, str] = {}
    try:
        until(
            lambda: json.loads(vdi_broker("host", "list", "--json", env=env).stdout)[0]["up"],
            20,
            "host up",
        )
        async with httpx.AsyncClient(timeout=10) as client:

            async def load(stop_at: float) -> None:
                i = 0
                while time.monotonic() < stop_at:
                    base = (base_a, base_b)[i % 2]
                    who = i % len(people)
                    i += 1
                    calls = [
                        client.get(f"{base}{path}", headers=people[who])
                        for path in ("/api/v1/me", "/readyz", "/metrics", "/api/v1/desktops")
                    ]
                    if who not in assigned:
                        calls.append(
                            client.post(
                                f"{base}/api/v1/sessions",
                                json={"pool": "Finanzen"},
                                headers=people[who],
                            )
                        )
                    for call in calls:
                        try:
                            r = await call
                        except httpx.HTTPError:
                            statuses.append(-1)
                            continue
                        statuses.append(r.status_code)
                        if r.request.method == "POST" and r.status_code in (200, 201):
                            assigned[who] = r.json()["session"]["id"]
                    typo = {**people[who], "accept": "text/html"}
                    with contextlib.suppress(httpx.HTTPError):
                        page = await client.get(f"{base}/desktopz", headers=typo)
                        pages.append(page.status_code)
                    await asyncio.sleep(0.02)

            loader = asyncio.create_task(load(time.monotonic() + 16))
            await asyncio.sleep(2)
            private_pg.stop("immediate")
            await asyncio.sleep(5)
            outage = list(statuses)
            private_pg.start()
            await loader
        assert 500 not in statuses, f"a 500 during the outage: {statuses}"
        assert pages and set(pages) == {404}, pages
        assert -1 not in statuses, "a broker stopped answering"
        assert 503 in outage, "the outage was not noticed"
        assert set(statuses[-8:]) <= {200, 201}, statuses[-20:]  # recovered by themselves
        assert a.poll() is None and b.poll() is None
        # Nothing lost or duplicated: every user got one session, the one answered.
        assert len(assigned) == len(people)
        rt = await open_runtime(
            load_settings(None, data_dir=tmp_path / "data", database_url=url), clock=SystemClock()
        )
        try:
            async with rt.db.read() as s:
                rows = (await s.execute(select(Session.id, Session.user_id))).all()
        finally:
            await rt.close()
        assert sorted(r.id for r in rows) == sorted(assigned.values())
        # The agent reported through it all and is current again.
        until(
            lambda: json.loads(vdi_broker("host", "list", "--json", env=env).stdout)[0]["up"],
            20,
            "host up after the outage",
        )
    finally:
        stop(agent)
        stop(a)
        stop(b)


async def test_200_concurrent_requests_on_two_replicas_give_exactly_50_sessions(
    tmp_path: Path, pg_url: str, replicas: list[tuple[subprocess.Popen[bytes], str]]
) -> None:
    (_, a), (_, b) = replicas
    env = clean_env(
        {
            "VDI_DATA_DIR": str(tmp_path / "data"),
            "VDI_DATABASE_URL": pg_url,
            **{f"VDI_{k.upper()}": v for k, v in JOBS.items()},
        }
    )
    agent = pool_and_agent(tmp_path, env, a, licences=500, desktops=50)
    try:
        until(
            lambda: (
                json.loads(vdi_broker("host", "list", "--json", env=env).stdout)[0]["desktops"]
                == 50
            ),
            30,
            "50 desktops registered",
        )
        rt = await open_runtime(
            load_settings(None, data_dir=tmp_path / "data", database_url=pg_url),
            clock=SystemClock(),
        )
        try:
            people = [await staff(rt, f"user{i:03d}") for i in range(200)]
        finally:
            await rt.close()
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        f"{(a, b)[i % 2]}/api/v1/sessions", json={"pool": "Finanzen"}, headers=who
                    )
                    for i, who in enumerate(people)
                )
            )
        statuses = sorted(r.status_code for r in responses)
        assert statuses.count(201) == 50, statuses
        assert statuses.count(503) == 150
        assert {r.json()["error"] for r in responses if r.status_code == 503} == {"capacity_full"}
        rt = await open_runtime(
            load_settings(None, data_dir=tmp_path / "data", database_url=pg_url),
            clock=SystemClock(),
        )
        try:
            async with rt.db.read() as s:
                rows = (await s.execute(select(Session.desktop_id, Session.user_id))).all()
        finally:
            await rt.close()
        assert len(rows) == 50
        assert len({r.desktop_id for r in rows}) == 50
        assert len({r.user_id for r in rows}) == 50
    finally:
        stop(agent)


async def test_gateway_watcher_says_a_database_outage_in_a_line_not_a_traceback_a_second(
    tmp_path: Path, private_pg: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """While the database is away the watcher (once a second) cannot ask it which
    sessions ended: a warning now and then, no traceback each round; the open
    tunnel keeps running, and the watcher works again once the database is back."""
    settings = gateway_settings(tmp_path, private_pg.url)
    async with gateway_rig(settings, FakeClock(dt.datetime.now(dt.UTC))) as rig:
        answer = await rig.desktop_for("maria")
        admin = await staff(rig.rt, "admin", department="IT", role=Role.ADMIN)
        async with rig.forward(answer) as forward:
            reader, writer = await asyncio.open_connection("127.0.0.1", forward.local_port)
            writer.write(b"hello")
            assert await reader.readexactly(5) == b"hello"
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="broker.gateway"):
                private_pg.stop("immediate")
                await asyncio.sleep(4)  # four watcher rounds
                writer.write(b"still")
                assert await reader.readexactly(5) == b"still"
                private_pg.start()
            ours = [r for r in caplog.records if r.name.startswith("broker.gateway")]
            assert ours, "the outage went unsaid"
            assert not [r for r in ours if r.exc_info], [r.getMessage() for r in ours]
            assert len(ours) == 1, [r.getMessage() for r in ours]
            assert "database is not reachable" in ours[0].getMessage()
            # Back: an administrator ends the session, and the watcher hangs up.
            sid = answer["session"]["id"]
            deadline = time.monotonic() + 15
            while (await rig.client.delete(f"/api/v1/sessions/{sid}", headers=admin)).is_error:
                assert time.monotonic() < deadline, "the broker did not recover"
                await asyncio.sleep(0.2)
            await asyncio.wait_for(forward.proc.wait(), 10)
            writer.close()


async def test_an_ssh_login_while_the_database_is_away_is_told_why(
    tmp_path: Path, private_pg: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The gateway cannot check a ticket without the database. The real OpenSSH
    client is told so in the disconnect (not just cut off), the journal gets a
    line, not a traceback per attempt, and the ticket, not spent, works once the
    database is back."""
    settings = gateway_settings(tmp_path, private_pg.url)
    async with gateway_rig(settings, FakeClock(dt.datetime.now(dt.UTC))) as rig:
        answer = await rig.desktop_for("maria")
        ticket = answer["connect"]["ticket"]
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="broker.gateway"):
            private_pg.stop("immediate")
            tries = [
                await run_ssh(ticket, rig.port, "maria", "maria@127.0.0.1", "true")
                for _ in range(2)
            ]
            private_pg.start()
        for done in tries:
            assert done.returncode != 0
            assert CANNOT_CHECK in done.stderr, done.stderr
        ours = [r for r in caplog.records if r.name.startswith("broker.gateway")]
        assert not [r for r in ours if r.exc_info], [r.getMessage() for r in ours]
        assert len(ours) == 1, [r.getMessage() for r in ours]
        assert "database is not reachable" in ours[0].getMessage()
        async with rig.forward(answer) as forward:
            assert await echo(forward.local_port, b"back") == b"back"
