"""`vdi-broker serve` as a real process: health, metrics, limits, and TOTP replay
protection across two broker processes on one database."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from broker.clock import SystemClock
from broker.config import load_settings
from broker.runtime import open_runtime
from tests.support.accounts import PASSWORD, add_user
from tests.support.processes import start_broker, stop
from tests.support.totp import oathtool_code


@pytest.fixture
def two_brokers(tmp_path: Path, db_url: str) -> Iterator[tuple[str, str]]:
    data = tmp_path / "data"
    a, url_a = start_broker(data, db_url)
    b, url_b = start_broker(data, db_url)
    try:
        yield url_a, url_b
    finally:
        stop(a)
        stop(b)


async def make_user(tmp_path: Path, db_url: str) -> str:
    settings = load_settings(None, data_dir=tmp_path / "data", database_url=db_url)
    rt = await open_runtime(settings, clock=SystemClock())
    try:
        secret = await add_user(rt)
        assert secret
        return secret
    finally:
        await rt.close()


async def test_parallel_logins_on_two_processes_one_code_one_success(
    tmp_path: Path, db_url: str, two_brokers: tuple[str, str]
) -> None:
    secret = await make_user(tmp_path, db_url)
    code = oathtool_code(secret, dt.datetime.now(dt.UTC))
    body = {"username": "maria", "password": PASSWORD, "code": code}
    async with httpx.AsyncClient(timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post(f"{two_brokers[i % 2]}/api/v1/auth/login", json=body) for i in range(20))
        )
    statuses = sorted(r.status_code for r in responses)
    # Exactly one wins; the others are replays, answered like wrong codes (401) or,
    # once five of them count as failures, by the lockout (423).
    assert statuses.count(200) == 1, statuses
    assert set(statuses) - {200} <= {401, 423}, statuses


def test_health_readiness_metrics_and_limits(tmp_path: Path, sqlite_url: str) -> None:
    proc, base = start_broker(tmp_path / "data", sqlite_url)
    try:
        assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
        ready = httpx.get(f"{base}/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}
        metrics = httpx.get(f"{base}/metrics", follow_redirects=False)
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        assert 'vdi_broker_build_info{version="' in metrics.text
        logins = {
            sample.labels["result"]: sample.value
            for family in text_string_to_metric_families(metrics.text)
            for sample in family.samples
            if sample.name == "vdi_logins_total"
        }
        assert logins["success"] == 0 and set(logins) >= {"invalid_credentials", "replay"}
        big = httpx.post(
            f"{base}/api/v1/auth/login",
            content=b"x" * (1024 * 1024 + 1),
            headers={"content-type": "application/json"},
        )
        assert big.status_code == 413
        assert big.json()["error"] == "payload_too_large"
        missing = httpx.get(f"{base}/api/v1/nothing-here")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        # HEAD wherever GET, as uptime monitors probe: GET's headers, no body.
        for path in ("/healthz", "/login"):
            got, head = httpx.get(f"{base}{path}"), httpx.head(f"{base}{path}")
            assert head.status_code == 200 and head.content == b""
            assert head.headers["content-type"] == got.headers["content-type"]
        assert httpx.head(f"{base}/healthz").headers["content-length"] == str(
            len(httpx.get(f"{base}/healthz").content)
        )
        assert httpx.head(f"{base}/api/v1/auth/login").status_code == 405
        headers = httpx.get(f"{base}/healthz").headers
        assert headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "server" not in headers
        # serve migrated the database by itself.
        assert (tmp_path / "vdi.sqlite3").exists()
        # uvicorn shuts down gracefully, then re-raises SIGTERM on itself (as
        # systemd expects from a service stopped by a signal).
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) in (0, -signal.SIGTERM)
    finally:
        stop(proc)
