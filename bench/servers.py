"""Starting what benchmarks measure against: databases and broker processes."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from broker.config import Settings
from broker.ports import free_port

PG = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc"]


def wait_ready(base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(f"no broker at {base}")


@contextlib.contextmanager
def database(backend: str) -> Iterator[str | None]:
    """None for the embedded SQLite default; a fresh PostgreSQL database otherwise."""
    if backend == "sqlite":
        yield None
        return
    name = f"vdi_bench_{secrets.token_hex(4)}"
    subprocess.run([*PG, f"CREATE DATABASE {name}"], check=True)
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        subprocess.run([*PG, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=True)


@dataclass(frozen=True)
class Running:
    base: str
    port: int
    pid: int


@contextlib.contextmanager
def broker(data: Path, url: str | None, **settings: str) -> Iterator[Running]:
    """A real `vdi-broker serve` on a free port."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VDI_")}
    env.update(
        VDI_DATA_DIR=str(data),
        VDI_HTTP_PORT=str(port),
        VDI_GATEWAY_ENABLED="false",
        VDI_LOG_LEVEL="WARNING",
    )
    if url:
        env["VDI_DATABASE_URL"] = url
    env.update({f"VDI_{k.upper()}": v for k, v in settings.items()})
    server = subprocess.Popen([str(Path(sys.executable).parent / "vdi-broker"), "serve"], env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base)
        yield Running(base, port, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=15)


@dataclass(frozen=True)
class Sshd:
    port: int
    pid: int
    client_key: Path


@contextlib.contextmanager
def sshd(workdir: Path) -> Iterator[Sshd]:
    """OpenSSH's sshd on a free loopback port, key login for root only, with TCP
    forwarding: the baseline the gateway is measured against. Needs root (sshd
    drops privileges to its own user) and Debian's openssh-server."""
    if os.geteuid() != 0:
        raise RuntimeError("the sshd baseline needs root (sshd -f CONFIG runs as root)")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(workdir / name)], check=True
        )
    authorized = workdir / "authorized_keys"
    authorized.write_text((workdir / "client_key.pub").read_text())
    authorized.chmod(0o600)
    port = free_port()
    config = workdir / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {workdir / 'host_key'}\n"
        f"AuthorizedKeysFile {authorized}\nPidFile {workdir / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "StrictModes no\nAllowTcpForwarding local\nPermitRootLogin prohibit-password\n"
    )
    server = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-f", str(config)], stderr=subprocess.DEVNULL
    )
    try:
        wait_listening(port, "sshd")
        yield Sshd(port, server.pid, workdir / "client_key")
    finally:
        server.terminate()
        server.wait(timeout=10)


@contextlib.contextmanager
def bare_login(settings: Settings) -> Iterator[int]:
    """bench.bare_login on a free port, with the argon2id parameters of `settings`."""
    port = free_port()
    argon2 = (settings.argon2_memory_kib, settings.argon2_time_cost, settings.argon2_parallelism)
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_login", str(port), *map(str, argon2)],
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        wait_listening(port, "bench.bare_login")
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def wait_listening(port: int, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not start")
        time.sleep(0.05)
