"""A real vdi-agent against a real broker on loopback: the host appears with its
metrics, goes down when the agent stops and comes back when it restarts; the
agent rides out a broker outage with its counters intact; power actions make
the round trip."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from broker.clock import SystemClock
from broker.config import load_settings
from broker.runtime import open_runtime
from broker.store.tables import Desktop, HostAction
from tests.support.fleet import staff
from tests.support.processes import (
    new_broker_env,
    start_agent,
    start_broker,
    stop,
    until,
    vdi_broker,
)
from tests.support.scrape import samples, value

FAST = {"report_interval": "1", "job_interval_s": "0.5", "host_down_after_missed": "3"}


class Fleet:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.data = tmp / "data"
        # The CLI must see the broker's settings (how fresh "up" is).
        self.env = new_broker_env(self.data, {f"VDI_{k.upper()}": v for k, v in FAST.items()})
        self.broker: subprocess.Popen[bytes] | None = None
        self.agent: subprocess.Popen[bytes] | None = None
        self.base = ""

    def cli(self, *args: str) -> Any:
        result = vdi_broker(*args, env=self.env)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout) if "--json" in args else result.stdout

    def host(self, name: str = "vhost01") -> dict[str, Any]:
        return next(h for h in self.cli("host", "list", "--json") if h["name"] == name)

    def start_broker(self) -> None:
        """Start the broker; again on the same port after a stop, as a restart would."""
        port = int(self.base.rsplit(":", 1)[1]) if self.base else None
        self.broker, self.base = start_broker(self.data, port=port, **FAST)

    def start_agent(self, *extra: str) -> None:
        self.agent = start_agent(
            self.base, self.tmp / "token", self.tmp / "agent-state", "vhost01", *extra
        )

    def scrape(self) -> str:
        return httpx.get(f"{self.base}/metrics", timeout=10).text

    def close(self) -> None:
        for proc in (self.agent, self.broker):
            if proc is not None:
                stop(proc)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path)
    f.cli(
        "pool", "add", "Finanzen", "--type", "floating", "--protocol", "rdp", "--max-sessions", "10"
    )
    token = f.cli("host", "add", "vhost01", "--json")["token"]
    (tmp_path / "token").write_text(token + "\n")
    (tmp_path / "token").chmod(0o600)
    f.start_broker()
    try:
        yield f
    finally:
        f.close()


def test_host_appears_goes_down_and_returns(fleet: Fleet) -> None:
    fleet.start_agent("--simulated-desktops", "3", "--pool", "Finanzen")
    host = until(
        lambda: fleet.host()["up"] and fleet.host()["desktops"] == 3 and fleet.host(),
        what="host up with 3 desktops",
    )
    assert host["agent_version"]
    metrics = fleet.scrape()
    assert 'vdi_host_up{host="vhost01"} 1' in metrics
    assert 'vdi_host_cpus{host="vhost01"}' in metrics
    assert 'vdi_pool_desktops{pool="Finanzen",power_state="running"} 3' in metrics

    assert fleet.agent is not None
    stop(fleet.agent)
    until(lambda: not fleet.host()["up"], timeout=15, what="host down")
    metrics = fleet.scrape()
    assert 'vdi_host_up{host="vhost01"} 0' in metrics
    assert 'vdi_host_cpus{host="vhost01"}' not in metrics  # stale: only info/timestamp/up

    fleet.start_agent("--simulated-desktops", "3", "--pool", "Finanzen")
    until(lambda: fleet.host()["up"], what="host back up")  # seq continued: no 409


def test_agent_rides_out_a_broker_outage_with_counters_intact(fleet: Fleet) -> None:
    fleet.start_agent(
        "--simulated-desktops",
        "3",
        "--pool",
        "Finanzen",
        "--simulated-hang",
        "1",
        "--probe-timeout",
        "0.3",
    )

    def timeouts() -> float:
        for line in fleet.scrape().splitlines():
            if line.startswith('vdi_host_probe_timeouts_total{host="vhost01"}'):
                return float(line.split()[-1])
        return 0.0

    before = until(timeouts, what="a first timeout reported")
    assert fleet.broker is not None
    stop(fleet.broker)
    time.sleep(4)  # the agent keeps probing; the hanging desktop keeps timing out
    fleet.start_broker()
    # Counters are cumulative: the timeouts of the outage are not lost.
    after = until(
        lambda: timeouts() >= before + 3 and timeouts(),
        timeout=30,
        what="timeouts of the outage delivered",
    )
    assert after >= before + 3
    assert fleet.agent is not None and fleet.agent.poll() is None


def test_a_refusing_console_is_out_of_service_until_it_answers(fleet: Fleet) -> None:
    """The real agent probes a static list: a console that refuses connections
    (no timeout, so the timeout counters stay quiet) leaves the pool's usable
    capacity and shows as out of service until it answers again."""
    listening = socket.create_server(("127.0.0.1", 0))
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    desktops = fleet.tmp / "desktops.toml"
    desktops.write_text(
        "".join(
            f'[[desktop]]\nname = "{name}"\naddress = "127.0.0.1"\nport = {port}\n'
            'protocol = "tcp"\npool = "Finanzen"\n\n'
            for name, port in (("pc-01", listening.getsockname()[1]), ("pc-02", closed_port))
        )
    )
    try:
        fleet.start_agent("--hypervisor", "static", "--static-desktops", str(desktops))

        def pool_figures() -> tuple[float, float]:
            found = samples(fleet.scrape())
            return (
                value(found, "vdi_pool_capacity_sessions", pool="Finanzen"),
                value(found, "vdi_pool_desktops_out_of_service", pool="Finanzen"),
            )

        until(lambda: pool_figures() == (1, 1), what="pc-02 counted out of service")
        table = [line.split() for line in fleet.cli("status").splitlines() if line]
        header = next(row for row in table if row[0] == "POOL")
        finanzen = next(row for row in table if row[0] == "Finanzen")
        assert dict(zip(header, finanzen, strict=True))["OUT_OF_SERVICE"] == "1"
        with socket.create_server(("127.0.0.1", closed_port)):  # its console starts
            until(lambda: pool_figures() == (2, 0), what="pc-02 back in service")
    finally:
        listening.close()


async def test_power_action_round_trip_through_a_session(fleet: Fleet) -> None:
    fleet.start_agent("--simulated-desktops", "1", "--pool", "Finanzen")
    until(lambda: fleet.host()["desktops"] == 1, what="desktop registered")
    rt = await open_runtime(load_settings(None, data_dir=fleet.data), clock=SystemClock())
    try:
        maria = await staff(rt, "maria")
        async with httpx.AsyncClient(base_url=fleet.base, timeout=10) as client:
            got = await client.post("/api/v1/sessions", json={"pool": "Finanzen"}, headers=maria)
            assert got.status_code == 201, got.text
            sid = got.json()["session"]["id"]
            ended = await client.delete(f"/api/v1/sessions/{sid}", headers=maria)
            assert ended.status_code == 200

        async def reset_done() -> bool:
            async with rt.db.read() as s:
                action = (await s.scalars(select(HostAction))).one()
                desktop = (await s.scalars(select(Desktop))).one()
            return action.state == "done" and not desktop.needs_reset

        deadline = time.monotonic() + 20
        while not await reset_done():
            assert time.monotonic() < deadline, "the agent did not reset the desktop"
            await asyncio.sleep(0.25)
    finally:
        await rt.close()
