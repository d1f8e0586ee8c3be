"""The agent's collection step around the hypervisor: failures and odd names."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import pytest

from agent.config import AgentConfig
from agent.hypervisors.base import Desktop, HypervisorError
from agent.hypervisors.simulated import SimulatedHypervisor
from agent.hypervisors.static import StaticHypervisor
from agent.protocol import HostMetrics, PowerState, Report
from agent.runner import Agent
from agent.state import ActionRecord, AgentState, record_result


class FlakySimulated(SimulatedHypervisor):
    """Simulated desktops whose listing can be made to fail, as libvirtd going away."""

    broken = False

    async def desktops(self) -> list[Desktop]:
        if self.broken:
            raise HypervisorError("listing domains failed: libvirtd is not running")
        return await super().desktops()


async def test_a_failed_listing_keeps_the_desktops_with_unknown_state() -> None:
    sim = await FlakySimulated(2).start()
    agent = Agent(AgentConfig(hypervisor="simulated", probe_timeout=0.5), sim, AgentState())
    try:
        _, healthy = await agent.collect()
        sim.broken = True
        metrics, listed = await agent.collect()
    finally:
        await sim.close()
    assert [d["power_state"] for d in healthy] == ["running", "running"]
    assert [(d["name"], d["power_state"]) for d in listed] == [
        ("sim-001", "unknown"),
        ("sim-002", "unknown"),
    ]
    assert all("probe" not in d for d in listed)  # not probed: state unknown
    status = {s["name"]: s for s in metrics["collectors"]}
    assert status["hypervisor"]["success"] is False
    assert "libvirtd is not running" in status["hypervisor"]["error"]
    assert status["cpu"]["success"] and status["probes"]["success"]
    assert HostMetrics.model_validate(metrics).probes.probes_total == 2


async def test_an_agent_that_never_listed_its_desktops_says_the_listing_failed() -> None:
    """Restarted while libvirtd is down it knows no desktops: its report has none,
    and says why, so the broker does not take them for vanished."""
    sim = await FlakySimulated(2).start()
    sim.broken = True
    agent = Agent(AgentConfig(hypervisor="simulated", probe_timeout=0.5), sim, AgentState())
    try:
        metrics, listed = await agent.collect()
    finally:
        await sim.close()
    assert listed == []
    report = Report(
        host="vhost01", agent_version="t", seq=1, created_at=dt.datetime.now(dt.UTC),
        interval_s=10, metrics=HostMetrics.model_validate(metrics), desktops=listed,
    )  # fmt: skip
    assert report.desktops_listed is False


async def test_the_journal_says_when_a_collector_starts_failing_and_works_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """libvirtd gone: the desktops turn unknown at the broker; the journal said
    nothing at all. Now one line when it starts, one when it is back."""
    caplog.set_level(logging.INFO)
    sim = await FlakySimulated(1).start()
    agent = Agent(AgentConfig(hypervisor="simulated", probe_timeout=0.5), sim, AgentState())
    try:
        await agent.collect()
        sim.broken = True
        for _ in range(3):
            await agent.collect()
        sim.broken = False
        await agent.collect()
        await agent.collect()
    finally:
        await sim.close()
    failed = "collector hypervisor failed: HypervisorError: listing domains failed"
    assert caplog.text.count(failed) == 1
    assert caplog.text.count("collector hypervisor works again") == 1
    assert "collector cpu" not in caplog.text


async def test_results_left_undelivered_by_the_last_run_count_from_the_start() -> None:
    """A restart after an outage: the saved state holds two action results the
    broker has not acknowledged. vdi_agent_report_backlog read 0 until the
    first report cycle."""
    state = AgentState()
    record_result(state, ActionRecord("a1", True, power_state="running"))
    record_result(state, ActionRecord("a2", False, error="no such desktop"))
    sim = await SimulatedHypervisor(1).start()
    try:
        agent = Agent(AgentConfig(hypervisor="simulated"), sim, state)
    finally:
        await sim.close()
    assert agent.telemetry.backlog == 2


async def test_desktops_with_names_the_protocol_refuses_are_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    hypervisor = StaticHypervisor(
        [
            Desktop("pc-01", PowerState.STOPPED),
            Desktop("Büro PC 2", PowerState.STOPPED),
        ]
    )
    agent = Agent(AgentConfig(hypervisor="static", pool="Bauamt"), hypervisor, AgentState())
    for _ in range(2):
        _, desktops = await agent.collect()
        assert [d["name"] for d in desktops] == ["pc-01"]
    assert caplog.text.count("'Büro PC 2' is left out of reports") == 1  # said once


async def test_the_journal_names_desktops_whose_probes_start_and_stop_timing_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """docs/runbooks.md (VdiDesktopProbeTimeouts) sends ops to the agent's journal
    for the names; said once per change, not every round."""
    caplog.set_level(logging.INFO, logger="agent")
    sim = await SimulatedHypervisor(3, hang=1).start()
    agent = Agent(AgentConfig(hypervisor="simulated", probe_timeout=0.2), sim, AgentState())
    try:
        for _ in range(3):
            await agent.collect()
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "sim-001" in warnings[0].getMessage()
        assert "sim-002" not in warnings[0].getMessage()
        caplog.clear()
        sim.set_hang("sim-001", hang=False)
        for _ in range(2):
            await agent.collect()
    finally:
        await sim.close()
    said = [(r.levelno, r.getMessage()) for r in caplog.records if "sim-00" in r.getMessage()]
    assert len(said) == 1 and said[0][0] == logging.INFO and "sim-001" in said[0][1]


async def test_the_journal_names_desktops_whose_console_refuses_and_where(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """docs/runbooks.md (VdiDesktopsOutOfService) has ops try the refusing console
    with nc from the host: the journal must say which desktop, at which address,
    once when it starts refusing and once when it answers again."""
    caplog.set_level(logging.INFO, logger="agent")
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    hypervisor = StaticHypervisor(
        [Desktop("pc-bauamt-02", PowerState.RUNNING, None, "127.0.0.1", port)]
    )
    agent = Agent(AgentConfig(hypervisor="static", probe_timeout=0.5), hypervisor, AgentState())
    for _ in range(3):
        await agent.collect()
    said = [(r.levelno, r.getMessage()) for r in caplog.records if "pc-bauamt" in r.getMessage()]
    assert said == [
        (
            logging.WARNING,
            f"console refused the connection for 1 desktop(s): pc-bauamt-02 (127.0.0.1:{port})",
        )
    ]
    caplog.clear()
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    try:
        for _ in range(2):
            await agent.collect()
    finally:
        server.close()
    said = [(r.levelno, r.getMessage()) for r in caplog.records if "pc-bauamt" in r.getMessage()]
    assert said == [(logging.INFO, "console probe answers again for 1 desktop(s): pc-bauamt-02")]
