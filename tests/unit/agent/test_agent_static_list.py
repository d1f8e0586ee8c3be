"""The static desktop list (TOML)."""

from __future__ import annotations

import pytest

from agent.hypervisors.base import ConsoleProtocol, Desktop
from agent.hypervisors.static import StaticListError, parse_static_list
from agent.protocol import PowerState

LIST = """
[[desktop]]
name = "pc-bauamt-01"
address = "10.0.0.21"
pool = "Bauamt"

[[desktop]]
name = "ts-01"
address = "fd00::21"
port = 3390

[[desktop]]
name = "kiosk-1"
address = "10.0.0.30"
protocol = "vnc"
"""


def test_desktops_from_a_list() -> None:
    assert parse_static_list(LIST) == [
        Desktop(
            "pc-bauamt-01", PowerState.RUNNING, "Bauamt", "10.0.0.21", 3389, ConsoleProtocol.RDP
        ),
        Desktop("ts-01", PowerState.RUNNING, None, "fd00::21", 3390, ConsoleProtocol.RDP),
        Desktop("kiosk-1", PowerState.RUNNING, None, "10.0.0.30", 5900, ConsoleProtocol.VNC),
    ]


def test_a_list_is_empty_only_on_purpose() -> None:
    # An emptied file would leave every desktop this agent reported missing.
    for text in ("", "\n", "# all moved to vhost02\n"):
        with pytest.raises(StaticListError, match="lists no desktops"):
            parse_static_list(text)
    assert parse_static_list("desktop = []  # the PCs went back to the office\n") == []


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[[desktop]]\nname = "a b"\naddress = "10.0.0.1"', "name must be"),
        ('[[desktop]]\nname = "a"\naddress = "pc.example.org"', "desktop a"),
        ('[[desktop]]\nname = "a"', "desktop a: address is missing"),
        ('[[desktop]]\nname = "a"\naddress = "10.0.0.1"\nprotocol = "spice"', "rdp, vnc, tcp"),
        ('[[desktop]]\nname = "a"\naddress = "10.0.0.1"\nprotocol = 5', "protocol must be"),
        ('[[desktop]]\nname = "a"\naddress = 167772161', "not a string"),
        ('[[desktop]]\nname = "a"\naddress = "fe80::1%eth0"', "scoped"),
        ('[[desktop]]\nname = "a"\naddress = "10.0.0.1"\npool = "Bau\\u0007amt"', "pool must be"),
        ('[[desktop]]\nname = "a"\naddress = "10.0.0.1"\npool = "Bau\\namt"', "pool must be"),
        ('[[desktop]]\nname = "a"\naddress = "10.0.0.1"\nport = 0', "port must be"),
        ('[[desktop]]\nname = "a"\naddress = "10.0.0.1"\nport = true', "port must be"),
        ('[[desktop]]\nname = "a"\naddress = "10.0.0.1"\nport = "3389"', "port must be"),
        ('[[desktop]]\nname = "a"\naddress = "10.0.0.1"\nprotocol = "tcp"', "port is missing"),
        ('[[desktop]]\nname = "a"\naddress = "10.0.0.1"\ncolour = "red"', "unknown keys colour"),
        ('[[desktop]]\nname = "a"\naddress = "10.0.0.1"\n' * 2, "listed twice"),
        ('desktop = "a"', "array of tables"),
        ('[[desktops]]\nname = "a"\naddress = "10.0.0.1"', "unknown keys desktops"),
        ('pool = "Bauamt"\n[[desktop]]\nname = "a"\naddress = "10.0.0.1"', "unknown keys pool"),
        ("[[desktop]\n", "not valid TOML"),
    ],
)
def test_mistakes_are_named(text: str, says: str) -> None:
    with pytest.raises(StaticListError, match=says):
        parse_static_list(text)
