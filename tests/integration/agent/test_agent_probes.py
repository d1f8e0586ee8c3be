"""Console probes against real listeners (simulated desktops)."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from agent.collectors.probes import ProbeTotals, Target, probe, probe_all, probe_many, tally
from agent.hypervisors.base import ConsoleProtocol
from agent.hypervisors.simulated import SimulatedHypervisor
from agent.protocol import ActionKind
from broker.ports import free_port


def endpoint(sim: SimulatedHypervisor, name: str) -> tuple[str, int]:
    found = sim.endpoint(name)
    assert found is not None
    return found


@pytest.mark.parametrize("protocol", [ConsoleProtocol.RDP, ConsoleProtocol.VNC])
async def test_probe_latency_is_about_the_desktops_latency(protocol: ConsoleProtocol) -> None:
    sim = await SimulatedHypervisor(2, protocol).start()
    sim.set_latency("sim-002", 0.25)
    try:
        fast = await probe(*endpoint(sim, "sim-001"), protocol, 2.0)
        slow = await probe(*endpoint(sim, "sim-002"), protocol, 2.0)
    finally:
        await sim.close()
    assert fast.ok and fast.latency_s is not None and fast.latency_s < 0.1
    assert slow.ok and slow.latency_s is not None and 0.25 <= slow.latency_s < 0.5


async def test_hanging_desktop_times_out_and_counts() -> None:
    sim = await SimulatedHypervisor(3, ConsoleProtocol.RDP, hang=1).start()
    try:
        outcomes = await probe_all(await sim.desktops(), timeout_s=0.3)
    finally:
        await sim.close()
    assert outcomes["sim-001"].error == "timeout" and not outcomes["sim-001"].ok
    assert outcomes["sim-002"].ok and outcomes["sim-003"].ok
    totals, mean = tally(ProbeTotals(probes_total=5, timeouts_total=1), outcomes.values())
    assert totals == ProbeTotals(probes_total=8, timeouts_total=2)
    assert mean is not None and mean < 0.3


async def test_stopped_desktop_is_refused_and_not_probed_once_listed_stopped() -> None:
    sim = await SimulatedHypervisor(2).start()
    try:
        port = endpoint(sim, "sim-001")[1]
        await sim.perform(ActionKind.STOP, "sim-001")
        refused = await probe("127.0.0.1", port, ConsoleProtocol.RDP, 1.0)
        outcomes = await probe_all(await sim.desktops(), timeout_s=1.0)
    finally:
        await sim.close()
    assert refused.error == "refused"
    assert set(outcomes) == {"sim-002"}


async def test_a_server_speaking_something_else_is_an_error() -> None:
    async def ssh_like(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n")
        await writer.drain()
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(ssh_like, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        vnc = await probe("127.0.0.1", port, ConsoleProtocol.VNC, 1.0)
        rdp = await probe("127.0.0.1", port, ConsoleProtocol.RDP, 1.0)
        tcp = await probe("127.0.0.1", port, ConsoleProtocol.TCP, 1.0)
    finally:
        server.close()
    assert (vnc.ok, vnc.error) == (False, "error")
    assert (rdp.ok, rdp.error) == (False, "error")
    assert tcp.ok  # connect only


async def test_ipv6_endpoint() -> None:
    if not socket.has_ipv6:
        pytest.fail("IPv6 is expected on this machine")
    server = await asyncio.start_server(lambda r, w: None, "::1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert (await probe("::1", port, ConsoleProtocol.TCP, 1.0)).ok
    finally:
        server.close()


async def test_200_desktops_with_4_hanging_take_about_one_timeout() -> None:
    sim = await SimulatedHypervisor(200, ConsoleProtocol.RDP, hang=4).start()
    try:
        desktops = await sim.desktops()
        started = time.perf_counter()
        outcomes = await probe_all(desktops, timeout_s=1.0)
        elapsed = time.perf_counter() - started
    finally:
        await sim.close()
    assert len(outcomes) == 200
    assert sum(o.error == "timeout" for o in outcomes.values()) == 4
    assert sum(o.ok for o in outcomes.values()) == 196
    assert 1.0 <= elapsed < 2.5  # one timeout plus scheduling; sequential would be 4 s


async def test_thousands_of_refused_probes_finish_quickly() -> None:
    # A refused connect can fail at once; each starts the next probe, and that
    # chain must neither nest nor stall.
    # A closed port below the ephemeral range (broker.ports): a port just freed by
    # bind(0) may be the next bind(0) of a test running alongside, whose server
    # would then answer these probes.
    port = free_port()
    targets = [Target("127.0.0.1", port, ConsoleProtocol.RDP)] * 3000
    started = time.perf_counter()
    outcomes = await probe_many(targets, timeout_s=2.0)
    assert [o.error for o in outcomes] == ["refused"] * 3000
    assert time.perf_counter() - started < 10


async def test_a_cancelled_round_starts_no_further_probes() -> None:
    sim = await SimulatedHypervisor(50, ConsoleProtocol.RDP, hang=50).start()
    try:
        desktops = await sim.desktops()
        round_ = asyncio.create_task(probe_all(desktops, timeout_s=0.3, concurrency=4))
        await asyncio.sleep(0.1)
        assert sum(d.connections or 0 for d in await sim.desktops()) == 4
        round_.cancel()
        await asyncio.sleep(0.5)  # the four in flight time out, and nothing follows
        assert sum(d.connections or 0 for d in await sim.desktops()) == 0
    finally:
        await sim.close()
