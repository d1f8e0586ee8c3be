"""May a tunnel go where its client asks? Pure rules, no I/O.

A client names the destination of a direct-tcpip channel itself, so it could ask
for anything the broker machine can reach: the database, the metadata service,
the broker's own ports, another user's desktop. The gateway therefore forwards
only to the one endpoint stored for the session's desktop, and only when the
client spells that endpoint exactly: an IP literal in canonical form
(`ipaddress`'s own spelling) and the same port. Names are never resolved, so no
alias, DNS answer or odd spelling (`127.1`, `0x7f.0.0.1`, `2130706433`,
`010.0.0.1`, ` 10.0.0.1`, `::ffff:10.0.0.1`) can lead anywhere else.

The stored address itself comes from an agent's report, which is trusted less
than the broker: it too must be a plain unicast address outside loopback (unless
the installation allows loopback desktops, as the demo does), link-local, the
metadata address and the denied networks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from broker.net import Network

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA = ipaddress.ip_address("169.254.169.254")
# "This network": Linux connects 0.0.0.0 to the machine itself.
THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")


class Refusal(StrEnum):
    """Why a destination was refused (audited; the client only hears "prohibited")."""

    NO_DESKTOP = "no_desktop"
    NOT_AN_ADDRESS = "not_an_address"  # a name, an alias or an unparsable spelling
    NOT_CANONICAL = "not_canonical"  # an address, but not spelled the one way
    OTHER_DESTINATION = "other_destination"  # not the session's desktop
    OTHER_PORT = "other_port"
    LOOPBACK = "loopback"
    LINK_LOCAL = "link_local"
    METADATA = "metadata"
    IPV4_MAPPED = "ipv4_mapped"
    NOT_UNICAST = "not_unicast"  # unspecified, multicast, broadcast, reserved
    DENIED_NETWORK = "denied_network"
    OUTSIDE_DESKTOP_NETWORKS = "outside_desktop_networks"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    refusal: Refusal | None = None

    @classmethod
    def refuse(cls, refusal: Refusal) -> Verdict:
        return cls(False, refusal)


ALLOW = Verdict(True)


@dataclass(frozen=True)
class ForwardRules:
    """What an installation allows beyond the fixed rules (from the settings)."""

    allow_loopback: bool = False
    denied_networks: Sequence[Network] = ()
    # When given, the only networks desktops may be in.
    desktop_networks: Sequence[Network] = ()


def canonical_address(text: str) -> IPAddress | None:
    """The address `text` spells, if it is an IP literal in canonical form.

    Python's parser already refuses the legacy inet_aton spellings (`127.1`,
    hex, octal, a bare integer) and surrounding spaces; comparing with its own
    spelling also refuses upper-case and uncompressed IPv6 forms, and zone ids
    (`fe80::1%eth0`) never equal a stored address's spelling.
    """
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return address if str(address) == text else None


def address_refusal(address: IPAddress, rules: ForwardRules) -> Refusal | None:
    """Why the gateway must never connect to `address`, or None if it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return Refusal.IPV4_MAPPED
    if address == METADATA:
        return Refusal.METADATA
    if address.is_loopback:
        return None if rules.allow_loopback else Refusal.LOOPBACK
    if address.is_link_local:
        return Refusal.LINK_LOCAL
    if (
        address.is_unspecified
        or address.is_multicast
        or address.is_reserved  # includes 240/4 with the broadcast address, and ::/8
        or (address.version == 4 and address in THIS_NETWORK)
    ):
        return Refusal.NOT_UNICAST
    if _in_any(address, rules.denied_networks):
        return Refusal.DENIED_NETWORK
    if rules.desktop_networks and not _in_any(address, rules.desktop_networks):
        return Refusal.OUTSIDE_DESKTOP_NETWORKS
    return None


def _in_any(address: IPAddress, networks: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def may_forward(
    requested_host: str,
    requested_port: int,
    stored_address: str | None,
    stored_port: int | None,
    rules: ForwardRules = ForwardRules(),
) -> Verdict:
    """May a channel that asks for `requested_host:requested_port` be forwarded to
    the session's desktop at `stored_address:stored_port`?"""
    if not stored_address or not stored_port:
        return Verdict.refuse(Refusal.NO_DESKTOP)
    requested = canonical_address(requested_host)
    if requested is None:
        try:
            ipaddress.ip_address(requested_host)
        except ValueError:
            return Verdict.refuse(Refusal.NOT_AN_ADDRESS)
        return Verdict.refuse(Refusal.NOT_CANONICAL)
    # Refuse dangerous destinations by what they are before comparing, so the
    # audit says "loopback" rather than just "not yours".
    refusal = address_refusal(requested, rules)
    if refusal is not None:
        return Verdict.refuse(refusal)
    stored = canonical_address(stored_address)
    if stored is None or requested != stored:
        return Verdict.refuse(Refusal.OTHER_DESTINATION)
    if requested_port != stored_port:
        return Verdict.refuse(Refusal.OTHER_PORT)
    return ALLOW
