"""The SSH gateway: tunnel throughput against OpenSSH's sshd, and memory per tunnel.

Throughput: the same OpenSSH client (`ssh -N -L`) pushes 1 GiB (quick: 128 MiB)
through a real `vdi-broker serve` gateway and through sshd's port forwarding on
this machine, to the same discard server; rounds alternate between the two, and
the figure is the ratio of the median rates (goal >= 0.9). Each server with its
own algorithms as the client negotiates them (the gateway offers AES-GCM only,
sshd's default lets the client pick chacha20-poly1305), and once more with both
forced to aes128-gcm, so the cipher's share and the Python data path's share can
be told apart. Server CPU per GiB is reported for both.

Concurrency: 500 users each hold an SSH connection with one tunnel to their own
simulated desktop (asyncssh clients in this process); the broker's RSS before
and after gives the memory per tunnel.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import httpx
import psutil
from sqlalchemy import select, update

from agent.hypervisors.simulated import SimulatedHypervisor
from bench.harness import Figure, median
from bench.populate import populate
from bench.servers import Running, Sshd, broker, sshd
from broker.clock import SystemClock
from broker.config import load_settings
from broker.gateway import tickets
from broker.ports import free_port
from broker.runtime import Runtime, open_runtime
from broker.store.tables import Desktop, Session, User, table

NAME = "gateway"
MIB = 1 << 20
CHUNK = b"\0" * MIB
TUNNELS = 500
SSH_BASE = [
    "ssh", "-N", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
]  # fmt: skip
SAME_CIPHER = ["-c", "aes128-gcm@openssh.com"]


# -- the discard server and the pusher (threads: the measured processes are others) --


class Discard:
    """Counts and drops what each connection sends; notes when a transfer ended."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.done = threading.Event()
        self.received = 0
        self.ended_at = 0.0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        buffer = bytearray(MIB)
        while True:
            conn, _ = self.sock.accept()
            total = 0
            with conn:
                while count := conn.recv_into(buffer):
                    total += count
            if total:  # a readiness probe sends nothing
                self.received, self.ended_at = total, time.perf_counter()
                self.done.set()

    def push(self, port: int, total: int) -> float:
        """Send `total` bytes to 127.0.0.1:port; MiB/s until the last byte arrived."""
        self.done.clear()
        with socket.create_connection(("127.0.0.1", port)) as conn:
            started = time.perf_counter()
            for _ in range(total // MIB):
                conn.sendall(CHUNK)
            conn.shutdown(socket.SHUT_WR)
            if not self.done.wait(600):
                raise TimeoutError("the transfer did not finish")
        if self.received != total:
            raise RuntimeError(f"{self.received} of {total} bytes arrived")
        return total / MIB / (self.ended_at - started)


def _listening(pid: int, port: int) -> bool:
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return any(
        c.status == psutil.CONN_LISTEN and c.laddr.port == port
        for p in procs
        for c in p.net_connections("tcp")
    )


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


@dataclass(frozen=True)
class Transfer:
    rate: float  # MiB/s
    server_cpu_s: float


def through(
    command: list[str],
    env: dict[str, str],
    discard: Discard,
    total: int,
    server: Callable[[], list[psutil.Process]],
) -> Transfer:
    """Start `ssh -L`, wait for its local port, push `total` bytes through it."""
    local = free_port()
    argv = [*command[:-1], "-L", f"127.0.0.1:{local}:127.0.0.1:{discard.port}", command[-1]]
    proc = subprocess.Popen(argv, env=env)
    try:
        deadline = time.monotonic() + 20
        while not _listening(proc.pid, local):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ssh -L did not come up: {' '.join(argv)}")
            time.sleep(0.05)
        procs = server()
        cpu0 = _cpu(procs)
        rate = discard.push(local, total)
        return Transfer(rate, _cpu(procs) - cpu0)
    finally:
        proc.terminate()
        proc.wait(10)


# -- the broker's side: a database with desktops, sessions and tickets ---------------


async def _prepare(data: Path, endpoints: list[tuple[str, int]]) -> None:
    """A pool, a host and a desktop with an active session per endpoint."""
    rt = await open_runtime(load_settings(None, data_dir=data), clock=SystemClock())
    try:
        n = len(endpoints)
        await populate(rt.db, hosts=1, desktops=n, pools=1, sessions=n, now=rt.clock.now())
        desktops = table(Desktop)
        async with rt.db.write_conn() as conn:
            for desktop_id, (address, port) in enumerate(endpoints, start=1):
                await conn.execute(
                    update(desktops)
                    .where(desktops.c.id == desktop_id)
                    .values(address=address, port=port)
                )
    finally:
        await rt.close()


async def _tickets(rt: Runtime) -> list[tuple[str, str]]:
    """A fresh ticket for every open session: (user name, ticket)."""
    sessions, users = table(Session), table(User)
    now = rt.clock.now()
    async with rt.db.write_conn() as conn:
        rows = (
            await conn.execute(
                select(sessions.c.id, sessions.c.user_id, users.c.name)
                .join(users, users.c.id == sessions.c.user_id)
                .order_by(sessions.c.user_id)
            )
        ).all()
        return [(r.name, await tickets.issue(conn, r.id, r.user_id, now, 600)) for r in rows]


def _gateway_settings(port: int) -> dict[str, str]:
    return {
        "gateway_enabled": "true",
        "gateway_port": str(port),
        "gateway_allow_loopback": "true",  # the benchmark's desktops are on 127.0.0.1
        # Its 500 clients all log in at once from one address, 127.0.0.1.
        "gateway_max_startups_per_source": "1000",
        "gateway_max_startups": "1000",
        "jobs_enabled": "false",
    }


# -- throughput -------------------------------------------------------------------------


def throughput(quick: bool) -> list[Figure]:
    total = (128 if quick else 1024) * MIB
    rounds = 1 if quick else 3
    discard = Discard()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        asyncio.run(_prepare(data, [("127.0.0.1", discard.port)]))
        gateway_port = free_port()
        with (
            broker(data, None, **_gateway_settings(gateway_port)) as running,
            sshd(Path(tmp)) as baseline,
        ):
            rt = asyncio.run(open_runtime(load_settings(None, data_dir=data), migrate_schema=False))
            try:
                results = _rounds(rt, running, gateway_port, baseline, discard, total, rounds)
            finally:
                asyncio.run(rt.close())
    figures = []
    size = f"{total // MIB} MiB x {rounds} rounds, OpenSSH client"
    for label, cipher in (("", "own algorithms"), ("aes128-gcm: ", "both aes128-gcm")):
        gw = median([t.rate for t in results[f"{label}gateway"]])
        base = median([t.rate for t in results[f"{label}sshd"]])
        gib = total / (1 << 30)

        def runs(server: str, label: str = label) -> str:
            rates = ", ".join(f"{t.rate:.0f}" for t in results[f"{label}{server}"])
            return f"{size}; runs {rates}"

        figures += [
            Figure(NAME, f"{label}gateway throughput", gw, "MiB/s", note=runs("gateway")),
            Figure(NAME, f"{label}sshd throughput", base, "MiB/s", note=runs("sshd")),
            Figure(
                NAME,
                f"{label}gateway / sshd throughput",
                gw / base,
                "",
                goal=">= 0.9" if not label else None,
                note=cipher,
            ),
            Figure(
                NAME,
                f"{label}gateway CPU per GiB",
                median([t.server_cpu_s for t in results[f"{label}gateway"]]) / gib,
                "s",
            ),
            Figure(
                NAME,
                f"{label}sshd CPU per GiB",
                median([t.server_cpu_s for t in results[f"{label}sshd"]]) / gib,
                "s",
            ),
        ]
    return figures


def _rounds(
    rt: Runtime,
    running: Running,
    gateway_port: int,
    baseline: Sshd,
    discard: Discard,
    total: int,
    rounds: int,
) -> dict[str, list[Transfer]]:
    user = asyncio.run(_tickets(rt))[0][0]
    broker_proc = psutil.Process(running.pid)
    sshd_proc = psutil.Process(baseline.pid)
    results: dict[str, list[Transfer]] = {}
    key_login = [
        "-i", str(baseline.client_key), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
    ]  # fmt: skip
    for n in range(rounds):
        for label, extra in (("", []), ("aes128-gcm: ", SAME_CIPHER)):
            order = ("gateway", "sshd") if n % 2 == 0 else ("sshd", "gateway")
            for server in order:
                if server == "gateway":
                    ticket = asyncio.run(_tickets(rt))[0][1]
                    command = [
                        "sshpass", "-e", *SSH_BASE, *extra, "-o", "PubkeyAuthentication=no",
                        "-p", str(gateway_port), f"{user}@127.0.0.1",
                    ]  # fmt: skip
                    env = {**os.environ, "SSHPASS": ticket}
                    procs: Callable[[], list[psutil.Process]] = lambda: [broker_proc]  # noqa: E731
                else:
                    command = [
                        *SSH_BASE, *extra, *key_login, "-p", str(baseline.port), "root@127.0.0.1",
                    ]  # fmt: skip
                    env = dict(os.environ)
                    procs = lambda: sshd_proc.children(recursive=True)  # noqa: E731
                result = through(command, env, discard, total, procs)
                results.setdefault(f"{label}{server}", []).append(result)
    return results


# -- 500 tunnels held -----------------------------------------------------------------


Held = list[tuple[asyncssh.SSHClientConnection, asyncssh.SSHWriter[bytes]]]


async def _hold(
    gateway_port: int, logins: list[tuple[str, str]], endpoints: list[tuple[str, int]]
) -> tuple[Held, float]:
    """Every user connects and opens a tunnel to their desktop; all are held open."""
    gate = asyncio.Semaphore(25)
    held: Held = []

    async def one(user: str, ticket: str, endpoint: tuple[str, int]) -> None:
        async with gate:
            conn = await asyncssh.connect(
                "127.0.0.1", gateway_port, username=user, password=ticket, known_hosts=None,
                client_keys=None, agent_path=None, config=None,
            )  # fmt: skip
            reader, writer = await conn.open_connection(*endpoint)
            writer.write(b"ping")
            if await reader.readexactly(4) != b"ping":
                raise RuntimeError("no echo")
            held.append((conn, writer))

    started = time.perf_counter()
    await asyncio.gather(*(one(u, t, e) for (u, t), e in zip(logins, endpoints, strict=True)))
    return held, time.perf_counter() - started


def concurrency(quick: bool) -> list[Figure]:
    count = 100 if quick else TUNNELS
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"

        async def scenario() -> list[Figure]:
            hv = await SimulatedHypervisor(count).start()
            try:
                endpoints = [(str(d.address), int(d.port or 0)) for d in await hv.desktops()]
                await _prepare(data, endpoints)
                rt = await open_runtime(load_settings(None, data_dir=data), migrate_schema=False)
                try:
                    logins = await _tickets(rt)
                finally:
                    await rt.close()
                gateway_port = free_port()
                with broker(data, None, **_gateway_settings(gateway_port)) as running:
                    process = psutil.Process(running.pid)
                    await asyncio.sleep(1)
                    before = process.memory_info().rss
                    held, took = await _hold(gateway_port, logins, endpoints)
                    await asyncio.sleep(2)  # let the tunnel rows and audit settle
                    after = process.memory_info().rss
                    scrape = httpx.get(f"{running.base}/metrics", timeout=10).text
                    open_now = next(
                        float(line.split()[-1])
                        for line in scrape.splitlines()
                        if line.startswith("vdi_gateway_tunnels ")
                    )
                    for conn, writer in held:
                        writer.close()
                        conn.close()
            finally:
                await hv.close()
            note = f"{count} SSH connections, one tunnel each, asyncssh clients"
            return [
                Figure(NAME, "tunnels held", open_now, "", goal=f">= {count}", note=note),
                Figure(NAME, "tunnels opened per second", count / took, "1/s", note=note),
                Figure(NAME, "broker RSS before", before / MIB, "MiB"),
                Figure(NAME, "broker RSS with tunnels", after / MIB, "MiB"),
                Figure(
                    NAME, "memory per tunnel", (after - before) / count / 1024, "KiB", note=note
                ),
            ]

        return asyncio.run(scenario())


def run(quick: bool = False) -> list[Figure]:
    return throughput(quick) + concurrency(quick)
