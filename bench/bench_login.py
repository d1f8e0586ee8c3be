"""Login storm: password + TOTP logins/s through the real HTTP server (uvicorn),
as a ratio to raw argon2id verifications/s with the same parameters on the same
cores, measured in the same run.

The server is a real `vdi-broker serve` process, once on SQLite (the embedded
default) and once on the local PostgreSQL server.
Every login uses a different user (a TOTP code is good once per user and step),
so the storm needs as many users as logins; they share one password hash so the
set-up does not take minutes of argon2.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type

from bench.harness import Figure, median, percentile
from bench.httpclient import Connection
from bench.servers import bare_login, broker, database
from broker.auth import totp
from broker.clock import SystemClock
from broker.config import Settings, load_settings
from broker.runtime import open_runtime
from broker.store.tables import User

PASSWORD = "storm trooper passphrase 2026"
NAME = "login"


def argon2_rate(settings: Settings, seconds: float) -> float:
    """Raw verifications/s with one thread per core, as the broker's pool has."""
    hasher = Argon2Hasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
        type=Type.ID,
    )
    stored = hasher.hash(PASSWORD)
    threads = os.cpu_count() or 1
    deadline = time.perf_counter() + seconds

    def worker() -> int:
        n = 0
        while time.perf_counter() < deadline:
            hasher.verify(stored, PASSWORD)
            n += 1
        return n

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(lambda _: worker(), range(threads)))
    return total / (time.perf_counter() - started)


async def make_users(settings: Settings, count: int) -> list[tuple[str, str]]:
    rt = await open_runtime(settings, clock=SystemClock())
    try:
        shared_hash = await rt.hasher.hash(PASSWORD)
        now = rt.clock.now()
        out = []
        async with rt.db.write() as s:
            for i in range(count):
                name = f"storm{i:05d}"
                user = User(
                    name=name,
                    department="Bench",
                    role="staff",
                    work_mode="home",
                    password_hash=shared_hash,
                    failed_logins=0,
                    disabled=False,
                    created_at=now,
                )
                s.add(user)
                await s.flush()
                secret = totp.new_secret()
                user.totp_secret = rt.box.encrypt(secret, totp.storage_context(user.id))
                out.append((name, secret))
        return out
    finally:
        await rt.close()


async def storm(
    port: int, users: list[tuple[str, str]], seconds: float, concurrency: int
) -> tuple[float, list[float], int]:
    """Log in as many users as possible in `seconds`; (logins/s, latencies, failures)."""
    queue = iter(users)
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def one_client() -> None:
        nonlocal failures
        conn = Connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                try:
                    name, secret = next(queue)
                except StopIteration:
                    return
                code = totp.code_at_step(secret, totp.step_at(time.time()))
                started = time.perf_counter()
                status, _ = await conn.post_json(
                    "/api/v1/auth/login", {"username": name, "password": PASSWORD, "code": code}
                )
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    failures += 1
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return len(latencies) / (time.perf_counter() - started), latencies, failures


@dataclass(frozen=True)
class Measured:
    raw: float  # argon2id verifications/s, the mean of a run before and after
    logins: float  # logins/s
    latencies: list[float]
    failures: int


def measure(
    port: int, settings: Settings, users: list[tuple[str, str]], seconds: float, concurrency: int
) -> Measured:
    """A warm-up, then the storm between two raw argon2id runs on the same cores."""
    asyncio.run(storm(port, users[:40], 2.0, concurrency))
    raw_before = argon2_rate(settings, seconds / 2)
    logins, latencies, failures = asyncio.run(storm(port, users[40:], seconds, concurrency))
    raw_after = argon2_rate(settings, seconds / 2)
    return Measured((raw_before + raw_after) / 2, logins, latencies, failures)


def storm_against(backend: str, seconds: float, concurrency: int) -> list[Figure]:
    """Start a broker on `backend` (sqlite|postgresql), measure the storm and argon2."""
    with tempfile.TemporaryDirectory() as tmp, database(backend) as url:
        data = Path(tmp)
        settings = load_settings(None, data_dir=data, database_url=url)
        users = asyncio.run(make_users(settings, int(seconds * 150)))
        with broker(data, url, login_rate_limit="1000000") as running:
            m = measure(running.port, settings, users, seconds, concurrency)
    note = f"{len(m.latencies)} logins, {m.failures} failed, concurrency {concurrency}"
    return [
        Figure(NAME, f"{backend}: argon2id verifications/s (raw, same cores)", m.raw, "1/s"),
        Figure(NAME, f"{backend}: logins/s through HTTP", m.logins, "1/s", note=note),
        Figure(NAME, f"{backend}: login p50", median(m.latencies) * 1000, "ms"),
        Figure(NAME, f"{backend}: login p99", percentile(m.latencies, 99) * 1000, "ms"),
        Figure(
            NAME, f"{backend}: ratio logins / raw argon2id", m.logins / m.raw, "", goal=">= 0.9"
        ),
        Figure(NAME, f"{backend}: failed logins", m.failures, "", goal="<= 0"),
    ]


def ceiling(seconds: float, concurrency: int) -> list[Figure]:
    """The same storm against bench.bare_login: uvicorn and argon2id, nothing else."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(None, data_dir=Path(tmp))
        # Any name and secret will do: the bare app checks the password only.
        users = [(f"storm{i:05d}", totp.new_secret()) for i in range(int(seconds * 150))]
        with bare_login(settings) as port:
            m = measure(port, settings, users, seconds, concurrency)
    note = f"{len(m.latencies)} requests, {m.failures} failed, concurrency {concurrency}"
    return [
        Figure(
            NAME,
            "ceiling: bare ASGI app, argon2id only, ratio to raw",
            m.logins / m.raw,
            "",
            note=note,
        )
    ]


def run(quick: bool = False) -> list[Figure]:
    seconds = 4.0 if quick else 15.0
    return (
        storm_against("sqlite", seconds, 8)
        + storm_against("postgresql", seconds, 8)
        + ceiling(seconds, 8)
    )
