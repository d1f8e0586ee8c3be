"""Which client address to believe, given the trusted reverse proxies, and what
per-source limits count."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from broker.text import comma_separated

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Sequence[str]) -> list[Network]:
    return [ipaddress.ip_network(v, strict=False) for v in values]


# Loopback and the private ranges: where a town's monitoring lives.
PRIVATE_NETWORKS = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
)


def in_networks(address: str | None, networks: Sequence[Network]) -> bool:
    """Whether an address lies in one of the networks; an IPv4 address written as
    IPv6 (::ffff:10.0.0.1, as dual-stack sockets report it) counts as IPv4."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


def client_ip(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]
) -> str | None:
    """The peer address, or, when the peer is a trusted proxy, the last untrusted hop
    of X-Forwarded-For (hops to the left of it could be forged by the client)."""
    if peer is None or not forwarded_for or not in_networks(peer, trusted):
        return peer
    hops = comma_separated(forwarded_for)
    for hop in reversed(hops):
        if not in_networks(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return hops[0] if hops else peer


def source_key(ip: str | None) -> str:
    """What per-source limits count: the IPv4 address or the IPv6 /64, the block
    a single customer line usually gets (one line has 2**64 addresses to rotate).
    """
    if not ip:
        return "unknown"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)
