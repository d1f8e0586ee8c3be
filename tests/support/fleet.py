"""Building a fleet for tests: pools, a host that reports desktops, staff with sessions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
from sqlalchemy import select

from agent.protocol import (
    ActionResult,
    DesktopReport,
    HostMetrics,
    PowerState,
    PressureStats,
    ProbeResult,
    ProbeStats,
    Report,
)
from broker.auth import websessions
from broker.domain import PoolType, Protocol, Role, WorkMode
from broker.hosts import service as hosts
from broker.pools import service as pools
from broker.runtime import Runtime
from broker.store.tables import User

COOKIE = "__Host-vdi_session"


class FakeAgent:
    """Sends real reports over the real endpoint, as a host's agent would."""

    def __init__(self, rt: Runtime, client: httpx.AsyncClient, name: str, token: str) -> None:
        self.rt, self.client, self.name, self.token = rt, client, name, token
        self.seq = 0
        self.desktops: dict[str, DesktopReport] = {}
        self.results: list[ActionResult] = []
        self.cpu = 0.2
        self.capacity: int | None = None  # the agent's --capacity

    def add(
        self,
        count: int,
        *,
        pool: str | None,
        power: PowerState = PowerState.RUNNING,
        first_port: int = 40000,
        prefix: str | None = None,
    ) -> None:
        prefix = prefix or f"{self.name}-d"
        start = len(self.desktops)
        for i in range(start, start + count):
            name = f"{prefix}{i:03d}"
            self.desktops[name] = DesktopReport(
                name=name,
                pool=pool,
                power_state=power,
                address="127.0.0.1",
                port=first_port + i,
                probe=ProbeResult(ok=True, latency_s=0.001),
            )

    def set_power(self, name: str, power: PowerState) -> None:
        self.desktops[name] = self.desktops[name].model_copy(update={"power_state": power})

    def set_console(self, name: str, probe: ProbeResult | None, *, endpoint: bool = True) -> None:
        """What the agent's last probe of the desktop's console found; without
        `endpoint` the desktop reports no console address at all."""
        update: dict[str, Any] = {"probe": probe}
        if not endpoint:
            update.update(address=None, port=None)
        self.desktops[name] = self.desktops[name].model_copy(update=update)

    async def report(self) -> dict[str, Any]:
        self.seq += 1
        report = Report(
            host=self.name,
            agent_version="test",
            seq=self.seq,
            created_at=self.rt.clock.now(),
            interval_s=10,
            metrics=HostMetrics(
                cpu_utilization_ratio=self.cpu,
                cpus=8,
                load1=1.5,
                memory_total_bytes=64 << 30,
                memory_available_bytes=48 << 30,
                pressure_available=True,
                pressure=PressureStats(cpu=0.02, memory=0.0, io=0.01),
                probes=ProbeStats(
                    probes_total=10 * self.seq, timeouts_total=self.seq // 2, latency_mean_s=0.004
                ),
                session_capacity=self.capacity,
            ),
            desktops=list(self.desktops.values()),
            action_results=self.results,
        )
        self.results = []
        response = await self.client.post(
            "/api/v1/agent/report",
            content=report.model_dump_json(),
            headers={"authorization": f"Bearer {self.token}", "content-type": "application/json"},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def obey(self) -> list[dict[str, Any]]:
        """Report, carry out the returned actions, and report their results."""
        actions = (await self.report())["actions"]
        for action in actions:
            power = {"start": PowerState.RUNNING, "stop": PowerState.STOPPED}.get(
                action["kind"], PowerState.RUNNING
            )
            self.set_power(action["desktop"], power)
            self.results.append(ActionResult(id=action["id"], ok=True, power_state=power))
        await self.report()
        return list(actions)


async def add_host(rt: Runtime, client: httpx.AsyncClient, name: str = "vhost01") -> FakeAgent:
    return FakeAgent(rt, client, name, await hosts.add(rt, name, "test"))


async def reporting_host(
    rt: Runtime,
    client: httpx.AsyncClient,
    count: int,
    *,
    pool: str = "Finanzen",
    name: str = "vhost01",
    power: PowerState = PowerState.RUNNING,
    prefix: str | None = None,
) -> FakeAgent:
    """A host whose agent has reported `count` desktops of `pool` once."""
    agent = await add_host(rt, client, name)
    agent.add(count, pool=pool, power=power, prefix=prefix)
    await agent.report()
    return agent


async def add_pool(
    rt: Runtime,
    name: str = "Finanzen",
    *,
    max_sessions: int = 40,
    type: PoolType = PoolType.FLOATING,
    departments: list[str] | None = None,
    field: bool = False,
) -> None:
    await pools.add(
        rt, pools.NewPool(name, type, Protocol.RDP, max_sessions, departments or [], field), "test"
    )


async def staff(
    rt: Runtime,
    name: str,
    *,
    department: str = "Finanzen",
    work_mode: WorkMode = WorkMode.HOME,
    role: Role = Role.STAFF,
    **extra: Any,
) -> dict[str, str]:
    """A user with a logged-in web session, without the cost of argon2: the headers
    a browser would send (cookie and CSRF token)."""
    now = rt.clock.now()
    async with rt.db.write() as s:
        user = User(
            name=name,
            department=department,
            role=role.value,
            work_mode=work_mode.value,
            failed_logins=0,
            disabled=False,
            created_at=now,
            **extra,
        )
        s.add(user)
    return await sign_in(rt, name)


async def new_web_session(rt: Runtime, name: str) -> websessions.NewWebSession:
    """A web session for an existing user, as a login would make it."""
    async with rt.db.write() as s:
        user_id = await s.scalar(select(User.id).where(User.name == name))
        assert user_id is not None, f"no user {name}"
        return await websessions.create(
            s, rt.box, user_id, rt.clock.now(), source_ip=None, user_agent="test"
        )


async def sign_in(rt: Runtime, name: str) -> dict[str, str]:
    """A fresh web session for an existing user (after the clock moved past the
    old one's timeouts): the headers a browser would send."""
    web = await new_web_session(rt, name)
    return {"cookie": f"{COOKIE}={web.cookie_value}", "X-CSRF-Token": web.csrf_token}


async def ask(
    client: httpx.AsyncClient, who: dict[str, str], pool: str = "Finanzen", **extra: Any
) -> httpx.Response:
    headers = dict(who)
    headers.update(extra.pop("headers", {}))
    return await client.post("/api/v1/sessions", json={"pool": pool, **extra}, headers=headers)


def moment(rt: Runtime, seconds: float) -> dt.datetime:
    return rt.clock.now() + dt.timedelta(seconds=seconds)
