"""may_forward(): only the session's own desktop endpoint, spelled the one way."""

from __future__ import annotations

import pytest

from broker.gateway.policy import ForwardRules, Refusal, canonical_address, may_forward
from broker.net import parse_networks

DESKTOP = ("10.20.0.15", 3389)


def refusal(host: str, port: int = 3389, stored: tuple[str, int] = DESKTOP, **rules: object):
    verdict = may_forward(host, port, stored[0], stored[1], ForwardRules(**rules))  # type: ignore[arg-type]
    return None if verdict.allowed else verdict.refusal


def test_the_stored_endpoint_itself_is_allowed() -> None:
    assert refusal("10.20.0.15") is None
    assert refusal("2001:db8::15", stored=("2001:db8::15", 3389)) is None


@pytest.mark.parametrize(
    ("host", "why"),
    [
        # names and aliases are never resolved
        ("localhost", Refusal.NOT_AN_ADDRESS),
        ("desktop15.rathaus.local", Refusal.NOT_AN_ADDRESS),
        ("ip6-localhost", Refusal.NOT_AN_ADDRESS),
        ("", Refusal.NOT_AN_ADDRESS),
        # odd spellings of an IPv4 address (inet_aton would take them)
        ("127.1", Refusal.NOT_AN_ADDRESS),
        ("0x7f.0.0.1", Refusal.NOT_AN_ADDRESS),
        ("0x7f000001", Refusal.NOT_AN_ADDRESS),
        ("2130706433", Refusal.NOT_AN_ADDRESS),
        ("017700000001", Refusal.NOT_AN_ADDRESS),
        ("010.20.0.15", Refusal.NOT_AN_ADDRESS),
        ("10.20.0.015", Refusal.NOT_AN_ADDRESS),
        (" 10.20.0.15", Refusal.NOT_AN_ADDRESS),
        ("10.20.0.15 ", Refusal.NOT_AN_ADDRESS),
        ("10.20.0.15\n", Refusal.NOT_AN_ADDRESS),
        ("10.20.0.15.", Refusal.NOT_AN_ADDRESS),
        ("[10.20.0.15]", Refusal.NOT_AN_ADDRESS),
        # the desktop's address in IPv6 clothing
        ("::ffff:10.20.0.15", Refusal.NOT_CANONICAL),
        ("::ffff:a14:f", Refusal.IPV4_MAPPED),
        ("::FFFF:A14:F", Refusal.NOT_CANONICAL),
        ("::10.20.0.15", Refusal.NOT_CANONICAL),
        # the broker machine, link-local, metadata
        ("127.0.0.1", Refusal.LOOPBACK),
        ("127.0.0.53", Refusal.LOOPBACK),
        ("127.255.255.254", Refusal.LOOPBACK),
        ("::1", Refusal.LOOPBACK),
        ("0:0:0:0:0:0:0:1", Refusal.NOT_CANONICAL),
        ("169.254.169.254", Refusal.METADATA),
        ("169.254.1.1", Refusal.LINK_LOCAL),
        ("fe80::1", Refusal.LINK_LOCAL),
        ("fe80::1%eth0", Refusal.LINK_LOCAL),
        ("FE80::1", Refusal.NOT_CANONICAL),
        ("0.0.0.0", Refusal.NOT_UNICAST),
        ("0.0.0.1", Refusal.NOT_UNICAST),
        ("::", Refusal.NOT_UNICAST),
        ("255.255.255.255", Refusal.NOT_UNICAST),
        ("224.0.0.1", Refusal.NOT_UNICAST),
        ("ff02::1", Refusal.NOT_UNICAST),
        # another desktop, the database, another network
        ("10.20.0.16", Refusal.OTHER_DESTINATION),
        ("10.20.0.1", Refusal.OTHER_DESTINATION),
        ("192.168.1.10", Refusal.OTHER_DESTINATION),
        ("2001:db8::15", Refusal.OTHER_DESTINATION),
    ],
)
def test_every_other_destination_is_refused(host: str, why: Refusal) -> None:
    assert refusal(host) == why


@pytest.mark.parametrize("port", [22, 5432, 3390, 5900, 0, 65535, 70000, -1])
def test_the_desktops_other_ports_are_refused(port: int) -> None:
    assert refusal("10.20.0.15", port) == Refusal.OTHER_PORT


def test_loopback_desktops_only_where_allowed() -> None:
    stored = ("127.0.0.1", 40001)
    assert refusal("127.0.0.1", 40001, stored) == Refusal.LOOPBACK
    assert refusal("127.0.0.1", 40001, stored, allow_loopback=True) is None
    # Even where allowed: only the desktop's own port, never the broker's others.
    assert refusal("127.0.0.1", 5432, stored, allow_loopback=True) == Refusal.OTHER_PORT
    assert refusal("127.0.0.2", 40001, stored, allow_loopback=True) == (Refusal.OTHER_DESTINATION)
    assert refusal("localhost", 40001, stored, allow_loopback=True) == Refusal.NOT_AN_ADDRESS


def test_a_dangerous_stored_address_is_refused_whatever_the_agent_says() -> None:
    # An agent (trusted less than the broker) reports a "desktop" on the
    # metadata address or the database network.
    assert refusal("169.254.169.254", 80, ("169.254.169.254", 80)) == Refusal.METADATA
    denied = parse_networks(["10.9.0.0/24"])
    assert refusal("10.9.0.5", 5432, ("10.9.0.5", 5432), denied_networks=denied) == (
        Refusal.DENIED_NETWORK
    )
    assert refusal("10.20.0.15", denied_networks=denied) is None


def test_with_desktop_networks_only_they_are_reached() -> None:
    """A compromised host reports a "desktop" on some other service: with the
    desktop networks configured, its users' tunnels cannot reach it."""
    desktops = parse_networks(["10.20.0.0/22", "2001:db8:20::/48"])
    assert refusal("10.20.0.15", desktop_networks=desktops) is None
    assert (
        refusal("2001:db8:20::15", 3389, ("2001:db8:20::15", 3389), desktop_networks=desktops)
        is None
    )
    assert refusal("10.30.0.7", 443, ("10.30.0.7", 443), desktop_networks=desktops) == (
        Refusal.OUTSIDE_DESKTOP_NETWORKS
    )
    assert refusal("2001:db8:99::1", 3389, ("2001:db8:99::1", 3389), desktop_networks=desktops) == (
        Refusal.OUTSIDE_DESKTOP_NETWORKS
    )
    # A denied network stays denied inside the desktop networks.
    both = {"desktop_networks": desktops, "denied_networks": parse_networks(["10.20.3.0/24"])}
    assert refusal("10.20.3.9", 3389, ("10.20.3.9", 3389), **both) == Refusal.DENIED_NETWORK


def test_no_stored_endpoint_means_no_tunnel() -> None:
    assert may_forward("10.20.0.15", 3389, None, None).refusal == Refusal.NO_DESKTOP
    assert may_forward("10.20.0.15", 3389, "10.20.0.15", None).refusal == Refusal.NO_DESKTOP


def test_a_non_canonical_stored_address_matches_nothing() -> None:
    assert refusal("10.20.0.15", stored=("010.20.0.15", 3389)) == Refusal.OTHER_DESTINATION


def test_canonical_address_is_pythons_own_spelling() -> None:
    assert str(canonical_address("2001:db8::1")) == "2001:db8::1"
    assert canonical_address("2001:0db8::1") is None
    assert canonical_address("2001:DB8::1") is None
    assert canonical_address("10.0.0.1") is not None
