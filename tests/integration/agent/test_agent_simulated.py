"""Simulated desktops are real listeners: handshakes, echo, hang, power actions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from agent.handshake import (
    RFB_BANNER,
    connection_confirm,
    connection_request,
    is_connection_confirm,
    tpkt_length,
)
from agent.hypervisors.base import ConsoleProtocol, HypervisorError
from agent.hypervisors.simulated import SimulatedHypervisor, desktop_names
from agent.protocol import ActionKind, PowerState


@pytest.fixture
async def rdp() -> AsyncIterator[SimulatedHypervisor]:
    sim = await SimulatedHypervisor(3, ConsoleProtocol.RDP).start()
    yield sim
    await sim.close()


async def connect(sim: SimulatedHypervisor, name: str):
    endpoint = sim.endpoint(name)
    assert endpoint is not None
    return await asyncio.open_connection(*endpoint)


def test_names() -> None:
    assert desktop_names(3) == ["sim-001", "sim-002", "sim-003"]
    assert desktop_names(1200)[-1] == "sim-1200"


async def test_rdp_desktop_confirms_the_connection_then_echoes(rdp: SimulatedHypervisor) -> None:
    reader, writer = await connect(rdp, "sim-001")
    writer.write(connection_request() + b"after the handshake")
    header = await reader.readexactly(4)
    frame = header + await reader.readexactly(tpkt_length(header) - 4)
    assert is_connection_confirm(frame) and frame == connection_confirm()
    assert await reader.readexactly(19) == b"after the handshake"
    payload = bytes(range(256)) * 400  # 100 KiB, as a tunnel would push
    writer.write(payload)
    assert await reader.readexactly(len(payload)) == payload
    writer.close()


async def test_rdp_desktop_echoes_data_that_is_no_handshake(rdp: SimulatedHypervisor) -> None:
    reader, writer = await connect(rdp, "sim-002")
    writer.write(b"hello desktop")
    assert await reader.readexactly(13) == b"hello desktop"
    writer.close()


async def test_vnc_desktop_sends_its_banner_first() -> None:
    sim = await SimulatedHypervisor(1, ConsoleProtocol.VNC).start()
    try:
        reader, writer = await connect(sim, "sim-001")
        assert await reader.readexactly(12) == RFB_BANNER
        writer.write(b"RFB 003.008\n")
        assert await reader.readexactly(12) == b"RFB 003.008\n"
        writer.close()
    finally:
        await sim.close()


async def test_hanging_desktop_accepts_but_never_answers() -> None:
    sim = await SimulatedHypervisor(2, ConsoleProtocol.VNC, hang=1).start()
    try:
        reader, writer = await connect(sim, "sim-001")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.3)
        writer.close()
        reader, writer = await connect(sim, "sim-002")
        assert await asyncio.wait_for(reader.readexactly(12), 1) == RFB_BANNER
        writer.close()
    finally:
        await sim.close()


async def test_latency_delays_the_answer(rdp: SimulatedHypervisor) -> None:
    rdp.set_latency("sim-003", 0.3)
    reader, writer = await connect(rdp, "sim-003")
    started = asyncio.get_running_loop().time()
    writer.write(b"x")
    assert await reader.readexactly(1) == b"x"
    assert asyncio.get_running_loop().time() - started >= 0.29
    writer.close()


async def test_connections_are_counted(rdp: SimulatedHypervisor) -> None:
    opened = [await connect(rdp, "sim-001") for _ in range(3)]
    for reader, writer in opened:  # an echo round trip proves the server side is up
        writer.write(b"?")
        await reader.readexactly(1)
    counts = {d.name: d.connections for d in await rdp.desktops()}
    assert counts == {"sim-001": 3, "sim-002": 0, "sim-003": 0}
    for _, writer in opened:
        writer.close()
        await writer.wait_closed()
    for _ in range(50):
        if (await rdp.desktops())[0].connections == 0:
            break
        await asyncio.sleep(0.01)
    assert (await rdp.desktops())[0].connections == 0


async def test_stop_refuses_connections_and_start_opens_again(rdp: SimulatedHypervisor) -> None:
    before = rdp.endpoint("sim-001")
    reader, writer = await connect(rdp, "sim-001")
    assert await rdp.perform(ActionKind.STOP, "sim-001") is PowerState.STOPPED
    assert await reader.read(10) == b""  # the open console dropped
    listing = {d.name: d for d in await rdp.desktops()}
    assert listing["sim-001"].power_state is PowerState.STOPPED
    assert listing["sim-001"].port is None and not listing["sim-001"].probeable
    assert await rdp.perform(ActionKind.STOP, "sim-001") is PowerState.STOPPED  # nothing to do
    assert await rdp.perform(ActionKind.START, "sim-001") is PowerState.RUNNING
    assert rdp.endpoint("sim-001") == before  # back on its port, which was still free
    reader, writer = await connect(rdp, "sim-001")
    writer.write(b"back")
    assert await reader.readexactly(4) == b"back"
    writer.close()


async def test_a_stopped_port_is_refused() -> None:
    sim = await SimulatedHypervisor(1).start()
    endpoint = sim.endpoint("sim-001")
    assert endpoint is not None
    await sim.perform(ActionKind.STOP, "sim-001")
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(*endpoint)
    await sim.close()


@pytest.mark.parametrize("action", [ActionKind.REBOOT, ActionKind.RESET])
async def test_reboot_and_reset_drop_the_console_and_come_back(
    rdp: SimulatedHypervisor, action: ActionKind
) -> None:
    reader, writer = await connect(rdp, "sim-002")
    assert await rdp.perform(action, "sim-002") is PowerState.RUNNING
    assert await reader.read(10) == b""
    reader, writer = await connect(rdp, "sim-002")
    writer.write(b"up")
    assert await reader.readexactly(2) == b"up"
    writer.close()


async def test_reboot_of_a_stopped_desktop_fails_a_reset_has_nothing_to_do(
    rdp: SimulatedHypervisor,
) -> None:
    await rdp.perform(ActionKind.STOP, "sim-001")
    with pytest.raises(HypervisorError, match="not running"):
        await rdp.perform(ActionKind.REBOOT, "sim-001")
    # A reset only has to clear a logon, and a stopped desktop holds none.
    assert await rdp.perform(ActionKind.RESET, "sim-001") is PowerState.STOPPED
    with pytest.raises(HypervisorError, match="no desktop named"):
        await rdp.perform(ActionKind.START, "sim-999")


async def test_boot_delay_shows_starting_and_stopping() -> None:
    sim = await SimulatedHypervisor(1, boot_delay_s=0.2).start()
    try:
        assert await sim.perform(ActionKind.STOP, "sim-001") is PowerState.STOPPING
        await asyncio.sleep(0.35)
        assert (await sim.desktops())[0].power_state is PowerState.STOPPED
        assert await sim.perform(ActionKind.START, "sim-001") is PowerState.STARTING
        assert sim.endpoint("sim-001") is None  # not listening while it boots
        await asyncio.sleep(0.35)
        assert (await sim.desktops())[0].power_state is PowerState.RUNNING
        assert sim.endpoint("sim-001") is not None
    finally:
        await sim.close()


async def test_a_desktop_whose_port_was_taken_comes_back_on_another(
    rdp: SimulatedHypervisor,
) -> None:
    before = rdp.endpoint("sim-003")
    assert before is not None
    await rdp.perform(ActionKind.STOP, "sim-003")
    squatter = await asyncio.start_server(lambda r, w: None, *before)
    try:
        await rdp.perform(ActionKind.START, "sim-003")
        after = rdp.endpoint("sim-003")
        assert after is not None and after != before
        listing = {d.name: d for d in await rdp.desktops()}
        assert listing["sim-003"].port == after[1]  # the report names the current port
    finally:
        squatter.close()
