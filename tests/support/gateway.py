"""A broker with its SSH gateway in this process, simulated desktops behind it, and the
real OpenSSH client (through sshpass) in front of it."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import httpx
import psutil
from sqlalchemy import select

from agent.hypervisors.simulated import SimulatedHypervisor
from agent.protocol import DesktopReport, PowerState, ProbeResult
from broker.app import create_app
from broker.clock import Clock, FakeClock
from broker.config import Settings
from broker.gateway.service import Gateway
from broker.ports import free_port
from broker.runtime import Runtime, open_runtime
from broker.store.tables import AuditEvent, Session
from tests.support.fleet import FakeAgent, add_host, add_pool, ask, staff

# The client's own configuration and keys must not take part.
SSH_OPTIONS = [
    "-F",
    "/dev/null",
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "PubkeyAuthentication=no",
    "-o",
    "NumberOfPasswordPrompts=1",
    "-o",
    "ConnectTimeout=10",
    "-o",
    "LogLevel=VERBOSE",
]


def gateway_settings(tmp_path: Path, db_url: str, **overrides: object) -> Settings:
    from tests.conftest import make_settings

    values: dict[str, object] = {
        "gateway_enabled": True,
        "gateway_port": free_port(),
        "gateway_allow_loopback": True,  # the simulated desktops listen on 127.0.0.1
        "gateway_auth_delay_s": 0.2,
        "gateway_auth_delay_max_s": 0.8,
    }
    values.update(overrides)
    return make_settings(tmp_path, db_url, **values)


async def report_simulated(agent: FakeAgent, hv: SimulatedHypervisor, pool: str) -> None:
    """The agent reports the simulated desktops at their real listening ports."""
    for d in await hv.desktops():
        agent.desktops[d.name] = DesktopReport(
            name=d.name,
            pool=pool,
            power_state=PowerState.RUNNING,
            address=d.address,
            port=d.port,
            probe=ProbeResult(ok=True, latency_s=0.001),
        )
    await agent.report()


@dataclass
class Rig:
    rt: Runtime
    client: httpx.AsyncClient
    gateway: Gateway
    hv: SimulatedHypervisor
    agent: FakeAgent

    @property
    def port(self) -> int:
        return self.gateway.port

    async def desktop_for(self, name: str, **user: Any) -> dict[str, Any]:
        """A new staff member with a web login and a desktop: the session answer."""
        who = await staff(self.rt, name, **user)
        got = await ask(self.client, who)
        assert got.status_code == 201, got.text
        body: dict[str, Any] = got.json()
        body["headers"] = who
        return body

    async def fresh(self, answer: dict[str, Any]) -> dict[str, Any]:
        """The session again, with a fresh ticket (GET /sessions/{id})."""
        sid = answer["session"]["id"]
        got = await self.client.get(f"/api/v1/sessions/{sid}", headers=answer["headers"])
        assert got.status_code == 200, got.text
        body: dict[str, Any] = got.json()
        body["headers"] = answer["headers"]
        return body

    def forward(self, answer: dict[str, Any], *extra: str) -> Any:
        """`ssh -N -L` to the answer's desktop with its ticket (async context manager)."""
        c = answer["connect"]
        return ssh_forward(c["ticket"], self.port, c["user"], target(answer), *extra)

    async def is_state(self, answer: dict[str, Any], state: str) -> bool:
        return await self.state(answer) == state

    async def state(self, answer: dict[str, Any]) -> str:
        async with self.rt.db.read() as s:
            state = await s.scalar(
                select(Session.state).where(Session.id == answer["session"]["id"])
            )
        assert state is not None
        return state

    async def audit(self, event: str) -> list[AuditEvent]:
        async with self.rt.db.read() as s:
            rows = await s.scalars(
                select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.id)
            )
            return list(rows)


def target(answer: dict[str, Any]) -> str:
    """The desktop endpoint of a session answer, as `ssh -L` wants it."""
    c = answer["connect"]
    return f"{c['desktop_address']}:{c['desktop_port']}"


def ssh_client(port: int, user: str, ticket: str | None, **options: Any) -> Any:
    """asyncssh as a client of the gateway (await it, or use it with `async with`),
    without the test machine's keys, agent or configuration."""
    return asyncssh.connect(
        "127.0.0.1", port, username=user, password=ticket, known_hosts=None,
        client_keys=None, agent_path=None, config=None, **options,
    )  # fmt: skip


async def rig_fixture(tmp_path: Path, sqlite_url: str, clock: FakeClock) -> AsyncIterator[Rig]:
    """The usual rig on SQLite; test modules make it a fixture: rig = pytest.fixture(...)."""
    async with gateway_rig(gateway_settings(tmp_path, sqlite_url), clock) as r:
        yield r


@contextlib.asynccontextmanager
async def gateway_rig(settings: Settings, clock: Clock, desktops: int = 3) -> AsyncIterator[Rig]:
    """The real app (its lifespan starts the gateway), a host whose agent reports
    simulated desktops, and a pool "Finanzen" of them."""
    rt = await open_runtime(settings, clock=clock)
    hv = await SimulatedHypervisor(desktops).start()
    app = create_app(settings, runtime=rt)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
                await add_pool(rt)
                agent = await add_host(rt, c)
                await report_simulated(agent, hv, "Finanzen")
                yield Rig(rt, c, app.state.gateway, hv, agent)
    finally:
        await hv.close()
        await rt.close()


# -- the OpenSSH client ----------------------------------------------------------------


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


async def run_ssh(
    ticket: str, port: int, user: str, *args: str, program: str = "ssh", timeout: float = 30
) -> Finished:
    """Run the OpenSSH `program` (ssh, sftp, scp) with the ticket as password."""
    port_flag = "-P" if program in ("sftp", "scp") else "-p"
    proc = await asyncio.create_subprocess_exec(
        "sshpass",
        "-e",
        program,
        *SSH_OPTIONS,
        port_flag,
        str(port),
        *args,
        env={**os.environ, "SSHPASS": ticket},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Finished(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


def _listens(pid: int, port: int) -> bool:
    try:
        processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
            for p in processes
            for c in p.net_connections(kind="tcp")
        )
    except psutil.NoSuchProcess:
        return False


class Forward:
    """A running `ssh -N -L 127.0.0.1:LOCAL:HOST:PORT` through the gateway."""

    def __init__(self, proc: asyncio.subprocess.Process, local_port: int) -> None:
        self.proc = proc
        self.local_port = local_port

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        return (await self.proc.stderr.read()).decode(errors="replace")


@contextlib.asynccontextmanager
async def ssh_forward(
    ticket: str,
    port: int,
    user: str,
    target: str,
    *extra: str,
    local: str | None = None,
    ready: bool = True,
) -> AsyncIterator[Forward]:
    """`ssh -N -L` to `target` ("HOST:PORT" or a path); waits until the local end
    listens (with `ready`), so a connection to it opens a channel."""
    local_port = free_port()
    spec = f"{local or f'127.0.0.1:{local_port}'}:{target}"
    proc = await asyncio.create_subprocess_exec(
        "sshpass",
        "-e",
        "ssh",
        *SSH_OPTIONS,
        "-N",
        "-L",
        spec,
        "-p",
        str(port),
        *extra,
        f"{user}@127.0.0.1",
        env={**os.environ, "SSHPASS": ticket},
        stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    forward = Forward(proc, local_port)
    try:
        if ready and local is None:
            for _ in range(200):
                if _listens(proc.pid, local_port):
                    break
                if proc.returncode is not None:
                    raise AssertionError(
                        f"ssh ended early ({proc.returncode}): {await forward.stderr()}"
                    )
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("ssh -L never listened")
        yield forward
    finally:
        if proc.returncode is None:
            await _stop(proc)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """End sshpass and the ssh it runs. sshpass passes SIGTERM on to ssh; should
    they not have ended within 10 s (a loaded CI machine once saw that), both
    are killed, so a test's teardown never leaves an ssh behind or fails on it."""
    children: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess):
        children = psutil.Process(proc.pid).children(recursive=True)
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


# -- bytes through a tunnel ------------------------------------------------------------


async def echo(port: int, payload: bytes, timeout: float = 60) -> bytes:
    """Send `payload` to 127.0.0.1:port and read as many bytes back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        for start in range(0, len(payload), 1 << 16):
            writer.write(payload[start : start + (1 << 16)])
            await writer.drain()

    try:
        sender = asyncio.create_task(send())
        got = await asyncio.wait_for(reader.readexactly(len(payload)), timeout)
        await sender
        return got
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def refused_locally(port: int, timeout: float = 10) -> bool:
    """True when a connection to the ssh -L port is closed without an answer, as ssh
    does when the gateway refuses the channel."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"hello")
        data = await asyncio.wait_for(reader.read(100), timeout)
        return data == b""
    except ConnectionResetError:
        return True
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def until(check: Any, timeout: float = 10, step: float = 0.05) -> Any:
    """Wait for an async check to return something true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {check}")
        await asyncio.sleep(step)


class TcpProxy:
    """127.0.0.1:port forwarding to another port, whose connections a test can cut
    (a network drop) or send elsewhere (an interceptor)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, port: int = 0) -> TcpProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(1 << 16):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def drop(self) -> None:
        """Cut every connection at once, as a network drop does (RST)."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def close(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
