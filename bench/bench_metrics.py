"""One /metrics scrape at 2,000 hosts and 50,000 desktops (goal <= 250 ms), with
the number of series, on SQLite and PostgreSQL.

The scrape is timed end to end through a real broker process (uvicorn), which
is what Prometheus sees; the in-process render time is reported beside it.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness import Figure, median, percentile
from bench.populate import populate
from bench.servers import broker, database
from broker import metrics
from broker.clock import SystemClock
from broker.config import load_settings
from broker.runtime import open_runtime

NAME = "metrics"


async def _prepare_and_render(
    data: Path, url: str | None, hosts: int, desktops: int, rounds: int
) -> tuple[list[float], int]:
    settings = load_settings(None, data_dir=data, database_url=url, report_interval=3600)
    rt = await open_runtime(settings, clock=SystemClock())
    try:
        await populate(
            rt.db,
            hosts=hosts,
            desktops=desktops,
            pools=20,
            sessions=desktops // 2,
            now=rt.clock.now(),
        )
        times = []
        body = b""
        for _ in range(rounds):
            started = time.perf_counter()
            body = await metrics.render(rt)
            times.append(time.perf_counter() - started)
        series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        return times, series
    finally:
        await rt.close()


def measure(backend: str, hosts: int, desktops: int, rounds: int) -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp, database(backend) as url:
        data = Path(tmp)
        render_times, series = asyncio.run(_prepare_and_render(data, url, hosts, desktops, rounds))
        with (
            broker(data, url, jobs_enabled="false", report_interval="3600") as running,
            httpx.Client(timeout=30) as client,
        ):
            client.get(f"{running.base}/metrics")  # warm-up
            scrape_times = []
            for _ in range(rounds):
                started = time.perf_counter()
                response = client.get(f"{running.base}/metrics")
                scrape_times.append(time.perf_counter() - started)
                assert response.status_code == 200
    label = f"{backend} {hosts} hosts/{desktops} desktops"
    return [
        Figure(NAME, f"{label}: series", series, ""),
        Figure(NAME, f"{label}: render median", median(render_times) * 1000, "ms"),
        Figure(NAME, f"{label}: scrape over HTTP median", median(scrape_times) * 1000, "ms"),
        Figure(
            NAME, f"{label}: scrape over HTTP max", max(scrape_times) * 1000, "ms", goal="<= 250"
        ),
        Figure(NAME, f"{label}: scrape p90", percentile(scrape_times, 90) * 1000, "ms"),
    ]


def run(quick: bool = False) -> list[Figure]:
    hosts, desktops, rounds = (200, 5000, 5) if quick else (2000, 50000, 10)
    return measure("sqlite", hosts, desktops, rounds) + measure(
        "postgresql", hosts, desktops, rounds
    )
