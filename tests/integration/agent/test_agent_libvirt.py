"""libvirt hypervisor against the real libvirt library and its built-in test driver."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.http import local_address_towards
from agent.hypervisors.base import ConsoleProtocol, Desktop, HypervisorError
from agent.hypervisors.libvirt import LibvirtHypervisor, parse_domain_xml
from agent.protocol import ActionKind, PowerState
from agent.runner import console_address

TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
VDI_NS = "https://vdi-broker.invalid/ns/1"


def node_xml(console_port: int) -> str:
    def dom(name: str, body: str, runstate: int = 1) -> str:
        return f"""
  <domain type="test" xmlns:test="{TEST_NS}">
    <name>{name}</name><memory>1048576</memory><os><type>hvm</type></os>
    {body}
    <test:runstate>{runstate}</test:runstate>
  </domain>"""

    return f"""<node>
  {
        dom(
            "fin-01",
            f'''
    <metadata><vdi:desktop xmlns:vdi="{VDI_NS}" pool="Finanzen" protocol="rdp"
      address="10.0.0.5" port="3389"/></metadata>
    <devices><graphics type="vnc" port="5999" listen="127.0.0.1"/></devices>''',
        )
    }
  {
        dom(
            "console-01",
            f'''
    <metadata><vdi:desktop xmlns:vdi="{VDI_NS}" pool="Bauamt"/></metadata>
    <devices><graphics type="vnc" port="{console_port}" listen="127.0.0.1"/></devices>''',
        )
    }
  {dom("spare-01", '<devices><graphics type="spice" autoport="yes"/></devices>', runstate=5)}
  {
        dom(
            "odd-01",
            f'''
    <metadata><vdi:desktop xmlns:vdi="{VDI_NS}" address="not-an-ip"/></metadata>''',
        )
    }
  {
        dom(
            "named-01",
            f'''
    <metadata><vdi:desktop xmlns:vdi="{VDI_NS}" pool="Finanzen"/></metadata>
    <devices><graphics type="vnc" port="5902" autoport="no" listen="localhost"/></devices>''',
        )
    }
</node>
"""


@pytest.fixture
async def console() -> AsyncIterator[tuple[int, list[asyncio.StreamWriter]]]:
    """A real listener standing in for a VNC console on this host."""
    clients: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clients.append(writer)
        await reader.read()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], clients
    for writer in clients:
        writer.close()
    server.close()


@pytest.fixture
async def node(
    tmp_path: Path, console: tuple[int, list[asyncio.StreamWriter]]
) -> AsyncIterator[LibvirtHypervisor]:
    path = tmp_path / "node.xml"
    path.write_text(node_xml(console[0]))
    hypervisor = await LibvirtHypervisor.open(f"test://{path}")
    yield hypervisor
    await hypervisor.close()


async def by_name(hypervisor: LibvirtHypervisor) -> dict[str, Desktop]:
    return {d.name: d for d in await hypervisor.desktops()}


async def test_default_test_driver() -> None:
    hypervisor = await LibvirtHypervisor.open("test:///default")
    try:
        desktops = await by_name(hypervisor)
        assert desktops["test"].power_state is PowerState.RUNNING
        assert desktops["test"].address is None and desktops["test"].pool is None
        assert await hypervisor.perform(ActionKind.STOP, "test") is PowerState.STOPPED
        assert await hypervisor.perform(ActionKind.START, "test") is PowerState.RUNNING
    finally:
        await hypervisor.close()


async def test_listing_endpoints_and_pools(node: LibvirtHypervisor) -> None:
    desktops = await by_name(node)
    assert set(desktops) == {"fin-01", "console-01", "spare-01", "odd-01", "named-01"}
    fin = desktops["fin-01"]
    assert (fin.pool, fin.address, fin.port, fin.protocol) == (
        "Finanzen",
        "10.0.0.5",
        3389,
        ConsoleProtocol.RDP,
    )
    assert fin.connections is None  # the guest's RDP port is not on this host
    assert fin.probeable
    spare = desktops["spare-01"]
    assert spare.power_state is PowerState.STOPPED and spare.port is None
    assert desktops["console-01"].protocol is ConsoleProtocol.VNC
    assert desktops["console-01"].pool == "Bauamt"


async def test_wrong_metadata_keeps_the_desktop_without_endpoint(
    node: LibvirtHypervisor, caplog: pytest.LogCaptureFixture
) -> None:
    odd = (await by_name(node))["odd-01"]
    assert odd.power_state is PowerState.RUNNING and odd.address is None
    assert "domain odd-01" in caplog.text and "not-an-ip" in caplog.text


async def test_a_metadata_problem_is_logged_once_not_every_listing(
    node: LibvirtHypervisor, caplog: pytest.LogCaptureFixture
) -> None:
    """The domains are listed every report interval: a wrong address in one
    domain's metadata must not be a warning every 30 s all day. It is said again
    once the domain was gone and is back with it."""

    def said() -> int:
        return caplog.text.count("domain odd-01: ignoring its console")

    for _ in range(3):
        await node.desktops()
    assert said() == 1
    conn = node._conn  # the test driver's state lives in this one connection
    odd = conn.lookupByName("odd-01")
    xml = odd.XMLDesc(0)
    odd.destroy()
    odd.undefine()
    assert "odd-01" not in await by_name(node)
    conn.defineXML(xml)
    await node.desktops()
    await node.desktops()
    assert said() == 2


async def test_a_console_listening_on_a_host_name_keeps_the_pool(
    node: LibvirtHypervisor, caplog: pytest.LogCaptureFixture
) -> None:
    """libvirt allows listen="localhost"; the agent reports IP literals only, so
    the console is left out, and the metadata's pool still counts."""
    named = (await by_name(node))["named-01"]
    assert named.pool == "Finanzen"
    assert named.address is None and named.port is None and named.connections is None
    assert "domain named-01: ignoring its console" in caplog.text
    assert "'localhost'" in caplog.text


async def test_connections_on_a_host_console_are_counted(
    node: LibvirtHypervisor, console: tuple[int, list[asyncio.StreamWriter]]
) -> None:
    port, clients = console
    assert (await by_name(node))["console-01"].connections == 0
    opened = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    for _ in range(100):
        if len(clients) == 2:
            break
        await asyncio.sleep(0.01)
    assert (await by_name(node))["console-01"].connections == 2
    for _, writer in opened:
        writer.close()


async def test_power_actions(node: LibvirtHypervisor) -> None:
    assert await node.perform(ActionKind.START, "spare-01") is PowerState.RUNNING
    assert (await by_name(node))["spare-01"].power_state is PowerState.RUNNING
    assert await node.perform(ActionKind.REBOOT, "spare-01") is PowerState.RUNNING
    assert await node.perform(ActionKind.RESET, "spare-01") is PowerState.RUNNING
    assert await node.perform(ActionKind.STOP, "spare-01") is PowerState.STOPPED
    assert (await by_name(node))["spare-01"].power_state is PowerState.STOPPED
    # asking for the state it is in succeeds without calling libvirt (which would refuse)
    assert await node.perform(ActionKind.STOP, "spare-01") is PowerState.STOPPED
    assert await node.perform(ActionKind.START, "fin-01") is PowerState.RUNNING


async def test_a_reset_clears_a_paused_desktop_and_has_nothing_to_do_on_a_stopped_one(
    node: LibvirtHypervisor,
) -> None:
    """The broker resets a desktop so that no previous logon survives: a paused guest
    holds one in memory (libvirt resets it and it stays paused), a stopped one
    does not (libvirt would refuse, and the desktop would never be handed out)."""
    await node.perform(ActionKind.START, "spare-01")
    await asyncio.to_thread(node._conn.lookupByName("spare-01").suspend)
    assert await node.perform(ActionKind.RESET, "spare-01") is PowerState.PAUSED
    await node.perform(ActionKind.STOP, "fin-01")
    assert await node.perform(ActionKind.RESET, "fin-01") is PowerState.STOPPED


async def test_failed_actions_say_why(node: LibvirtHypervisor) -> None:
    with pytest.raises(HypervisorError, match="reboot spare-01"):
        await node.perform(ActionKind.REBOOT, "spare-01")  # it is off
    with pytest.raises(HypervisorError, match="nope"):
        await node.perform(ActionKind.START, "nope")


async def test_state_lives_in_the_one_open_connection(node: LibvirtHypervisor) -> None:
    await node.perform(ActionKind.START, "spare-01")
    for _ in range(3):
        assert (await by_name(node))["spare-01"].power_state is PowerState.RUNNING


async def test_a_lost_libvirt_connection_is_opened_again(
    node: LibvirtHypervisor, caplog: pytest.LogCaptureFixture
) -> None:
    """libvirtd restarted (a package upgrade): the agent's one connection is dead.
    It used to stay dead, every desktop reported unknown until the agent itself
    was restarted; now the next listing or action connects again."""
    assert "fin-01" in await by_name(node)
    node._conn.close()  # the connection goes away under the agent
    assert (await by_name(node))["spare-01"].power_state is PowerState.STOPPED
    assert "the connection to libvirt at test://" in caplog.text
    node._conn.close()
    assert await node.perform(ActionKind.START, "spare-01") is PowerState.RUNNING


async def test_a_libvirt_that_stays_away_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "node.xml"
    path.write_text(node_xml(5900))
    hypervisor = await LibvirtHypervisor.open(f"test://{path}")
    path.unlink()  # the test driver cannot open it again
    hypervisor._conn.close()
    with pytest.raises(HypervisorError, match="lost and cannot be opened again"):
        await hypervisor.desktops()
    await hypervisor.close()  # no libvirtError at the agent's stop


async def test_unreachable_libvirt_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HypervisorError, match="cannot connect to libvirt"):
        await LibvirtHypervisor.open(f"test://{tmp_path}/missing.xml")


async def test_consoles_on_all_interfaces_are_reported_at_the_console_address(
    tmp_path: Path,
) -> None:
    path = tmp_path / "node.xml"
    body = '<devices><graphics type="vnc" port="5901" listen="0.0.0.0"/></devices>'
    path.write_text(
        f"""<node><domain type="test" xmlns:test="{TEST_NS}">
    <name>any-01</name><memory>1048576</memory><os><type>hvm</type></os>{body}
    <test:runstate>1</test:runstate></domain></node>"""
    )
    hypervisor = await LibvirtHypervisor.open(f"test://{path}", console_address="192.0.2.40")
    try:
        desktop = (await by_name(hypervisor))["any-01"]
        assert (desktop.address, desktop.port) == ("192.0.2.40", 5901)
    finally:
        await hypervisor.close()


async def test_the_console_address_is_the_way_to_the_broker_unless_set() -> None:
    towards_broker = AgentConfig(broker="http://127.0.0.1:8000")
    assert await console_address(towards_broker) == "127.0.0.1"
    assert local_address_towards("http://127.0.0.2:8000") == "127.0.0.1"  # loopback's route
    set_by_hand = AgentConfig(broker="http://127.0.0.1:8000", console_address="192.0.2.40")
    assert await console_address(set_by_hand) == "192.0.2.40"
    # No way to the broker found: loopback, as before, with a warning.
    assert local_address_towards("http://no-such-broker.invalid") is None
    assert local_address_towards("not a url") is None
    assert await console_address(AgentConfig(broker="http://no-such-broker.invalid")) == "127.0.0.1"


def test_the_documented_virsh_command_names_the_pool() -> None:
    """docs/operations.md tells how to put a desktop's pool in its libvirt metadata
    (the namespace is what makes the agent read it): that command, run on the test
    driver's domain, gives a domain XML in which the agent finds the pool."""
    guide = (Path(__file__).resolve().parents[3] / "docs" / "operations.md").read_text()
    found = re.search(r"^virsh metadata fin-01 (.+)$", guide, re.MULTILINE)
    assert found, "operations.md shows no `virsh metadata` command"
    # One virsh session: the test driver keeps its state per connection.
    done = subprocess.run(
        ["virsh", "-c", "test:///default", f"metadata test {found.group(1)}; dumpxml test"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert parse_domain_xml(done.stdout[done.stdout.index("<domain") :]).pool == "Finanzen"
