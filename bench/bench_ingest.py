"""Report ingestion on the broker: reports/s and broker CPU per report, on SQLite
and PostgreSQL (goal >= 2,000 reports/s).

500 hosts report 20 desktops each, as their agents would between changes: the
metrics change with every report, the desktop inventory does not (the usual
case). A lean client on 16 keep-alive connections sends them round-robin with
rising seq numbers to a real `vdi-broker serve`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import tempfile
import time
from pathlib import Path

import psutil

from agent.protocol import DesktopReport, HostMetrics, PowerState, ProbeResult, Report
from bench.harness import Figure, median, percentile
from bench.httpclient import Connection
from bench.populate import host_metrics, populate
from bench.servers import broker, database
from broker.clock import SystemClock
from broker.config import load_settings
from broker.hosts.inventory import inventory_digest
from broker.runtime import open_runtime
from broker.store.tables import Desktop, Host, table

NAME = "ingest"
HOSTS, PER_HOST = 500, 20


async def _prepare(
    data: Path, url: str | None
) -> dict[str, tuple[str, list[DesktopReport], HostMetrics]]:
    settings = load_settings(None, data_dir=data, database_url=url, report_interval=3600)
    rt = await open_runtime(settings, clock=SystemClock())
    rng = random.Random(11)
    try:
        fleet = await populate(
            rt.db, hosts=HOSTS, desktops=HOSTS * PER_HOST, pools=1, sessions=0, now=rt.clock.now()
        )
        hosts = table(Host)
        desktops = table(Desktop)
        out = {}
        async with rt.db.write_conn() as conn:
            # Desktops by host as populate laid them out (i % HOSTS + 1).
            rows = (await conn.execute(desktops.select().order_by(desktops.c.id))).all()
            by_host: dict[int, list[str]] = {}
            for r in rows:
                by_host.setdefault(r.host_id, []).append(r.name)
            for i, (name, token) in enumerate(sorted(fleet.host_tokens.items()), start=1):
                items = [
                    DesktopReport(
                        name=d,
                        pool="pool00",
                        power_state=PowerState.RUNNING,
                        address="127.0.0.1",
                        port=3389,
                        probe=ProbeResult(ok=True, latency_s=0.002),
                    )
                    for d in by_host[i]
                ]
                await conn.execute(
                    hosts.update()
                    .where(hosts.c.id == i)
                    .values(inventory_hash=inventory_digest(items, settings.pool_rules))
                )
                out[name] = (token, items, HostMetrics.model_validate(host_metrics(rng)))
        return out
    finally:
        await rt.close()


def _bodies(
    fleet: dict[str, tuple[str, list[DesktopReport], HostMetrics]], rounds: int
) -> list[tuple[dict[str, str], bytes]]:
    """Prebuilt requests: the client must not be what is measured."""
    now = dt.datetime.now(dt.UTC)
    out = []
    for seq in range(2, rounds + 2):
        for host, (token, items, metrics) in fleet.items():
            body = Report(
                host=host,
                agent_version="bench",
                seq=seq,
                created_at=now,
                interval_s=10,
                metrics=metrics,
                desktops=items,
            ).model_dump_json()
            out.append(({"Authorization": f"Bearer {token}"}, body.encode()))
    return out


async def _send(
    port: int, requests: list[tuple[dict[str, str], bytes]], concurrency: int
) -> tuple[float, list[float], int]:
    queue = iter(requests)
    latencies: list[float] = []
    failures = 0

    async def worker() -> None:
        nonlocal failures
        conn = Connection("127.0.0.1", port)
        try:
            for headers, body in queue:
                head = (
                    f"POST /api/v1/agent/report HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                    f"Authorization: {headers['Authorization']}\r\n\r\n"
                ).encode()
                started = time.perf_counter()
                status, _ = await conn.request(head + body)
                latencies.append(time.perf_counter() - started)
                failures += status != 200
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies) / (time.perf_counter() - started), latencies, failures


def measure(backend: str, rounds: int) -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp, database(backend) as url:
        data = Path(tmp)
        fleet = asyncio.run(_prepare(data, url))
        requests = _bodies(fleet, rounds)
        with broker(
            data, url, report_interval="3600", jobs_enabled="false", report_max_clock_skew_s="3600"
        ) as running:
            port = running.port
            server = psutil.Process(running.pid)
            asyncio.run(_send(port, requests[:HOSTS], 16))  # warm-up round
            cpu0 = server.cpu_times()
            rate, latencies, failures = asyncio.run(_send(port, requests[HOSTS:], 16))
            cpu1 = server.cpu_times()
    n = len(latencies)
    cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / n
    return [
        Figure(
            NAME,
            f"{backend}: reports/s",
            rate,
            "1/s",
            goal=">= 2000",
            note=f"{n} reports, {HOSTS} hosts x {PER_HOST} desktops, 16 connections",
        ),
        Figure(NAME, f"{backend}: broker CPU per report", cpu * 1000, "ms"),
        Figure(NAME, f"{backend}: latency p50", median(latencies) * 1000, "ms"),
        Figure(NAME, f"{backend}: latency p99", percentile(latencies, 99) * 1000, "ms"),
        Figure(NAME, f"{backend}: failed reports", failures, "", goal="<= 0"),
    ]


def run(quick: bool = False) -> list[Figure]:
    rounds = 3 if quick else 10
    return measure("sqlite", rounds) + measure("postgresql", rounds)
