"""`vdi-broker demo`: the whole product on one machine, on SQLite.

Starts from a fresh database in the demo directory (the key file and gateway
host key are kept, so fingerprints stay the same between runs), creates demo
users with TOTP, pools and a simulated host, starts that host's agent, prints
how to log in and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from broker.auth import enrolment
from broker.config import Settings, load_settings
from broker.dirs import ensure_dir
from broker.domain import PoolType, Protocol, Role, WorkMode
from broker.gateway import hostkey
from broker.hosts import service as hosts
from broker.pools import service as pools
from broker.ports import free_port, port_is_free
from broker.runtime import Runtime, open_runtime
from broker.serve import NotifyingServer, configure_logging, run_async, uvicorn_config
from broker.users import service as users


@dataclass(frozen=True)
class DemoHost:
    name: str
    pool: str
    desktops: int


DEMO_HOSTS = (
    DemoHost("demo-host-1", "Verwaltung", 6),
    DemoHost("demo-host-2", "Außendienst", 2),
)


@dataclass(frozen=True)
class DemoUser:
    name: str
    department: str
    role: Role
    work_mode: WorkMode
    what: str


DEMO_USERS = (
    DemoUser("anna", "Bürgerbüro", Role.STAFF, WorkMode.HOME, "works from home"),
    DemoUser("felix", "Bauhof", Role.STAFF, WorkMode.FIELD, "field worker (building yard)"),
    DemoUser("admin", "IT", Role.ADMIN, WorkMode.HOME, "administrator"),
)


@dataclass(frozen=True)
class Credentials:
    user: DemoUser
    password: str
    enrolment: enrolment.AdminEnrolment


def pick_port(wanted: int, what: str) -> int:
    if wanted and port_is_free("127.0.0.1", wanted):
        return wanted
    port = free_port()
    if wanted:
        print(f"Port {wanted} is taken; the {what} uses port {port} instead.")
    return port


def fresh_database(data_dir: Path) -> None:
    for path in data_dir.glob("vdi-broker.sqlite3*"):
        path.unlink()


async def seed(
    rt: Runtime, data_dir: Path
) -> tuple[list[Credentials], list[tuple[DemoHost, Path]]]:
    creds = []
    for demo in DEMO_USERS:
        password = f"demo-{secrets.token_urlsafe(9)}"
        new = users.NewUser(demo.name, demo.department, demo.role, demo.work_mode)
        await users.add(rt, new, password, "demo")
        enrolled = await enrolment.admin_enrol(rt, demo.name, "demo", replace=False)
        creds.append(Credentials(demo, password, enrolled))
    await pools.add(
        rt,
        pools.NewPool("Verwaltung", PoolType.FLOATING, Protocol.RDP, 10, ["Bürgerbüro", "IT"]),
        "demo",
    )
    await pools.add(
        rt,
        pools.NewPool("Außendienst", PoolType.FLOATING, Protocol.RDP, 4, ["Bauhof"], field=True),
        "demo",
    )
    agents = []
    for host in DEMO_HOSTS:
        token = await hosts.add(rt, host.name, "demo")
        token_file = data_dir / f"{host.name}.token"
        token_file.unlink(missing_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
        agents.append((host, token_file))
    return creds, agents


def banner(settings: Settings, creds: list[Credentials]) -> str:
    lines = [
        "",
        "vdi-broker demo is running.",
        f"  Portal:  {settings.effective_public_url}/",
        f"  API:     {settings.effective_public_url}/api/v1",
        f"  Metrics: {settings.effective_public_url}/metrics",
        f"  Gateway: ssh://{settings.gateway_host}:{settings.gateway_port}",
        f"           host key {hostkey.fingerprint_of_file(settings.gateway_host_key_file)}",
        f"  Connect: vdi-connect {settings.effective_public_url} --user anna --no-client",
        f"  Data:    {settings.data_dir}",
        "",
        "Add each account to an authenticator app (scan the QR code or type the key):",
    ]
    for c in creds:
        lines += [
            "",
            f"== {c.user.name} ({c.user.what}, {c.user.department})",
            f"   password:  {c.password}",
            f"   key:       {c.enrolment.secret}",
            f"   otpauth:   {c.enrolment.otpauth_uri}",
            f"   recovery:  {', '.join(c.enrolment.recovery_codes[:2])} ...",
            c.enrolment.qr_text,
        ]
    lines += [
        "Without a phone: oathtool --totp -b KEY prints the current code.",
        "Press Ctrl-C to stop.",
        "",
    ]
    return "\n".join(lines)


def start_agent(settings: Settings, host: DemoHost, token_file: Path) -> subprocess.Popen[bytes]:
    """A real vdi-agent with simulated desktops (real TCP listeners on 127.0.0.1)."""
    # Our own interpreter and fixed arguments: nothing here comes from a user.
    return subprocess.Popen(  # noqa: S603
        [
            sys.executable, "-m", "agent.cli", "run",
            "--broker", settings.effective_public_url,
            "--token-file", str(token_file),
            "--host-name", host.name,
            "--hypervisor", "simulated",
            "--simulated-desktops", str(host.desktops),
            "--pool", host.pool,
            "--interval", str(settings.report_interval),
            "--state-dir", str(settings.data_dir / host.name),
            "--log-level", "WARNING",
        ]
    )  # fmt: skip


class DemoServer(NotifyingServer):
    """The broker, and the demo's agents, which must go when it goes: uvicorn
    re-raises SIGTERM once it has shut down, so code after serve() never runs."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.agents: list[subprocess.Popen[bytes]] = []

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        stop_agents(self.agents)
        await super().shutdown(sockets)


def stop_agents(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


async def _run(settings: Settings, args: argparse.Namespace) -> None:
    rt = await open_runtime(settings)
    try:
        creds, agents = await seed(rt, settings.data_dir)
    finally:
        await rt.close()
    server = DemoServer(uvicorn_config(settings))
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.05)
    if serving.done():
        await serving
        return
    server.agents = [start_agent(settings, host, token_file) for host, token_file in agents]
    print(banner(settings, creds), flush=True)
    try:
        await serving
    finally:
        stop_agents(server.agents)


def run_demo(args: argparse.Namespace) -> int:
    # Options first, then the VDI_* variables, as everywhere; the demo's own
    # data directory rather than the service's.
    env = load_settings(None)
    if args.dir is not None:
        data_dir = args.dir.resolve()
    elif "data_dir" in env.model_fields_set:
        data_dir = env.data_dir.resolve()
    else:
        data_dir = Path("demo-data").resolve()
    ensure_dir(data_dir, "the demo directory", mode=0o700)
    fresh_database(data_dir)
    settings = load_settings(
        None,
        data_dir=data_dir,
        database_url=None,
        http_host="127.0.0.1",
        http_port=pick_port(env.http_port if args.port is None else args.port, "portal"),
        gateway_host="127.0.0.1",
        gateway_port=pick_port(
            env.gateway_port if args.gateway_port is None else args.gateway_port, "SSH gateway"
        ),
        gateway_allow_loopback=True,  # the simulated desktops listen on 127.0.0.1
        cookie_secure=False,  # plain http on localhost only
        totp_issuer="VDI Demo",
        report_interval=5.0,
    )
    configure_logging("WARNING")
    with contextlib.suppress(KeyboardInterrupt):
        run_async(_run(settings, args))
    return 0
