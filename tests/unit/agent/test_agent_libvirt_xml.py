"""Console endpoint and pool from libvirt domain XML; socket tables."""

from __future__ import annotations

import pytest

from agent.hypervisors.base import ConsoleProtocol
from agent.hypervisors.connections import established_per_port
from agent.hypervisors.libvirt import DomainConsole, parse_domain_xml, power_state
from agent.protocol import PowerState


def domain(devices: str = "", metadata: str = "") -> str:
    return f"""<domain type='kvm'><name>d</name>
      <metadata>{metadata}</metadata><devices>{devices}</devices></domain>"""


def vdi(attrs: str) -> str:
    return f'<vdi:desktop xmlns:vdi="https://vdi-broker.invalid/ns/1" {attrs}/>'


def test_vnc_graphics_give_the_console_endpoint() -> None:
    xml = domain("<graphics type='vnc' port='5901' autoport='yes' listen='192.0.2.7'/>")
    assert parse_domain_xml(xml) == DomainConsole(
        address="192.0.2.7", port=5901, protocol=ConsoleProtocol.VNC, on_host=True
    )


def test_listen_element_and_wildcard_listen() -> None:
    nested = "<graphics type='spice' port='5930'><listen type='address' address='::'/></graphics>"
    console = parse_domain_xml(domain(nested), any_address="192.0.2.40")
    assert (console.address, console.port, console.protocol) == (
        "192.0.2.40",
        5930,
        ConsoleProtocol.TCP,
    )
    wildcard = domain("<graphics type='vnc' port='5931' listen='0.0.0.0'/>")
    assert parse_domain_xml(wildcard, any_address="192.0.2.40").address == "192.0.2.40"
    # No listen address at all: qemu.conf's vnc_listen, loopback unless changed.
    unset = domain("<graphics type='vnc' port='5932'/>")
    assert parse_domain_xml(unset, any_address="192.0.2.40").address == "127.0.0.1"


def test_autoport_of_a_stopped_domain_is_no_endpoint() -> None:
    console = parse_domain_xml(domain("<graphics type='vnc' port='-1' autoport='yes'/>"))
    assert console.port is None and console.address is None
    assert console.protocol is ConsoleProtocol.VNC


def test_unix_socket_console_has_no_tcp_endpoint() -> None:
    xml = domain("<graphics type='vnc' port='5900'><listen type='socket'/></graphics>")
    assert parse_domain_xml(xml).address is None


def test_no_graphics_no_metadata() -> None:
    assert parse_domain_xml(domain()) == DomainConsole()


def test_metadata_names_the_pool_and_keeps_the_graphics_console() -> None:
    xml = domain("<graphics type='vnc' port='5901'/>", vdi('pool="Finanzen"'))
    assert parse_domain_xml(xml) == DomainConsole(
        "Finanzen", "127.0.0.1", 5901, ConsoleProtocol.VNC, on_host=True
    )


def test_metadata_endpoint_overrides_graphics() -> None:
    xml = domain(
        "<graphics type='vnc' port='5901'/>",
        vdi('pool="Bauamt" protocol="rdp" address="10.0.0.5" port="3390"'),
    )
    assert parse_domain_xml(xml) == DomainConsole(
        "Bauamt", "10.0.0.5", 3390, ConsoleProtocol.RDP, on_host=False
    )


def test_metadata_endpoint_defaults_to_rdp_on_3389() -> None:
    console = parse_domain_xml(domain(metadata=vdi('address="10.0.0.6"')))
    assert (console.port, console.protocol) == (3389, ConsoleProtocol.RDP)


@pytest.mark.parametrize(
    ("attrs", "wrong"),
    [
        ('address="pc.example.org"', "pc.example.org"),
        ('address="fe80::5%eth0"', "fe80::5%eth0"),  # a zone means nothing to the broker
        ('address="10.0.0.5" port="70000"', "70000"),
        ('address="10.0.0.5" protocol="ica"', "ica"),
        ('address="10.0.0.5" protocol="tcp"', "needs a port"),
    ],
)
def test_a_wrong_metadata_endpoint_is_no_endpoint_but_the_pool_stays(
    attrs: str, wrong: str
) -> None:
    # The graphics console is no stand-in: the metadata meant another endpoint.
    xml = domain("<graphics type='vnc' port='5901'/>", vdi(f'pool="Finanzen" {attrs}'))
    console = parse_domain_xml(xml)
    assert (console.pool, console.address, console.port) == ("Finanzen", None, None)
    assert len(console.problems) == 1
    assert console.problems[0].startswith("ignoring its console") and wrong in console.problems[0]


@pytest.mark.parametrize("pool", ["x" * 65, "Fin&#10;anzen", "Fin&#127;anzen"])
def test_a_wrong_pool_is_no_pool_but_the_console_stays(pool: str) -> None:
    xml = domain("<graphics type='vnc' port='5901'/>", vdi(f'pool="{pool}"'))
    console = parse_domain_xml(xml)
    assert console.pool is None
    assert (console.address, console.port, console.on_host) == ("127.0.0.1", 5901, True)
    assert len(console.problems) == 1 and console.problems[0].startswith("ignoring its pool")


@pytest.mark.parametrize(
    "graphics",
    [
        "<graphics type='vnc' port='5902' listen='localhost'/>",
        "<graphics type='vnc' port='5902'><listen type='address' address='vnc.host'/></graphics>",
        "<graphics type='vnc' port='5902' listen='fe80::1%eth0'/>",
        "<graphics type='vnc' port='0' listen='127.0.0.1'/>",
    ],
)
def test_a_console_that_cannot_be_resolved_keeps_the_pool(graphics: str) -> None:
    """libvirt allows a host name as the listen address; the agent reports IP
    literals only. Only the console is left out, the pool still counts."""
    console = parse_domain_xml(domain(graphics, vdi('pool="Finanzen"')))
    assert console.pool == "Finanzen"
    assert console.address is None and console.port is None
    assert len(console.problems) == 1 and console.problems[0].startswith("ignoring its console")


def test_a_wrong_graphics_element_does_not_matter_beside_a_metadata_endpoint() -> None:
    xml = domain(
        "<graphics type='vnc' port='5902' listen='localhost'/>",
        vdi('pool="Bauamt" address="10.0.0.5"'),
    )
    assert parse_domain_xml(xml) == DomainConsole(
        "Bauamt", "10.0.0.5", 3389, ConsoleProtocol.RDP, on_host=False
    )


def test_foreign_metadata_is_ignored() -> None:
    other = '<app:info xmlns:app="https://example.org/app" pool="Nope"/>'
    assert parse_domain_xml(domain(metadata=other)).pool is None


def test_power_states() -> None:
    assert power_state(1) is PowerState.RUNNING
    assert power_state(2) is PowerState.RUNNING
    assert power_state(3) is PowerState.PAUSED
    assert power_state(4) is PowerState.STOPPING
    assert power_state(5) is PowerState.STOPPED
    assert power_state(6) is PowerState.CRASHED
    assert power_state(99) is PowerState.UNKNOWN


TCP_TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:170D 00000000:0000 0A 00000000:00000000 00:00000000 00000000   0 0 1 1
   1: 0100007F:170D 0200A8C0:D431 01 00000000:00000000 00:00000000 00000000   0 0 2 1
   2: 0100007F:170D 0300A8C0:D432 01 00000000:00000000 00:00000000 00000000   0 0 3 1
   3: 0100007F:D433 0100007F:170D 01 00000000:00000000 00:00000000 00000000   0 0 4 1
   4: 0100007F:170E 0300A8C0:D434 06 00000000:00000000 00:00000000 00000000   0 0 5 1
"""


def test_established_connections_are_counted_by_local_port() -> None:
    counts = established_per_port(TCP_TABLE)
    assert counts[0x170D] == 2  # 5901: two clients; the listener itself is not counted
    assert counts[0xD433] == 1  # an outgoing connection counts for its own local port
    assert counts[0x170E] == 0  # TIME_WAIT is no client
