"""The asyncssh side of the gateway: one `GatewayConnection` per SSH connection.

It answers what SSH asks: which login methods exist (a password only: the
one-time ticket), and what to do with each channel and global request. Only
direct-tcpip channels are passed on (to `Gateway.open_tunnel`, which applies
broker.gateway.policy); sessions (shell, exec, subsystems such as sftp and scp,
and with them pty, X11 and agent forwarding requests), remote forwarding,
Unix-socket forwarding and tun/tap are refused as administratively prohibited,
or, where SSH has only yes or no (global requests), with no.

The algorithms are a deliberate short list (`server_options`): modern key
exchange, AES-GCM only, no compression, one ed25519 host key. asyncssh offers
strict key exchange (the Terrapin counter-measure, kex-strict-s-v00@openssh.com)
on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncssh
from asyncssh import ChannelOpenError

from broker.config import Settings
from broker.gateway.reasons import CANNOT_CHECK, NO_SESSIONS, ONLY_YOUR_DESKTOP, TICKET_REFUSED
from broker.net import source_key
from broker.store.db_errors import database_down, driver_error

if TYPE_CHECKING:
    from broker.gateway.bridge import Bridge
    from broker.gateway.service import Gateway
    from broker.gateway.tunnels import Tunnel

log = logging.getLogger(__name__)

PROHIBITED = asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED

KEX_ALGS = [
    "mlkem768x25519-sha256",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group14-sha256",
]
# AES-GCM only: an AEAD cipher that the Terrapin attack does not touch even with
# a client lacking strict key exchange, and that AES-NI makes the cheapest for
# this Python data path (chacha20-poly1305 costs about 60 % more CPU per byte
# here, see bench/bench_gateway.py). Every maintained SSH client has it.
ENCRYPTION_ALGS = ["aes256-gcm@openssh.com", "aes128-gcm@openssh.com"]
# Not used with AES-GCM, but a client needs an overlap to agree at all.
MAC_ALGS = ["hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com"]
SIGNATURE_ALGS = ["ssh-ed25519"]
# A client that stops answering keepalives for about a minute is gone: its
# tunnels close and its session becomes disconnected.
KEEPALIVE_S = 15.0
KEEPALIVE_COUNT = 4
# Channel flow control: the window is what a client may send ahead; 2 MiB keeps a
# fast link busy. Larger windows measured slower with the OpenSSH client here.
WINDOW = 2 * 1024 * 1024
MAX_PACKET = 32 * 1024


@dataclass(frozen=True)
class Grant:
    """What a redeemed ticket allows: tunnels to one session's desktop."""

    session_id: str
    user_id: int
    user: str


def server_options(settings: Settings, host_key: asyncssh.SSHKey) -> dict[str, Any]:
    """Keyword arguments of asyncssh.create_server for the gateway."""
    return {
        "server_host_keys": [host_key],
        "server_version": "VDI_Gateway",
        "login_timeout": settings.gateway_login_timeout_s,
        "keepalive_interval": KEEPALIVE_S,
        "keepalive_count_max": KEEPALIVE_COUNT,
        "password_auth": True,
        "public_key_auth": False,
        "kbdint_auth": False,
        "host_based_auth": False,
        "gss_host": None,
        "allow_pty": False,
        "x11_forwarding": False,
        "agent_forwarding": False,
        "allow_scp": False,
        "kex_algs": KEX_ALGS,
        "encryption_algs": ENCRYPTION_ALGS,
        "mac_algs": MAC_ALGS,
        "compression_algs": ["none"],
        "signature_algs": SIGNATURE_ALGS,
        "window": WINDOW,
        "max_pktsize": MAX_PACKET,
    }


class TooManyStartups(Exception):
    """A source has as many connections logging in as it may have."""


def _prohibited(reason: str) -> ChannelOpenError:
    return ChannelOpenError(PROHIBITED, reason)


class GatewayConnection(asyncssh.SSHServer):
    """One client's SSH connection: its login and its channels."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.conn: asyncssh.SSHServerConnection | None = None
        self.source_ip: str | None = None
        self.source = ""  # what per-source limits count: see slowdown.source_key
        self.grant: Grant | None = None
        self.tunnels: set[Tunnel] = set()
        self.refusals = 0

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername")
        self.source_ip = str(peer[0]) if peer else None
        self.source = source_key(self.source_ip)
        if not self.gateway.may_start(self.source):
            # asyncssh closes a connection whose handler raises here, before it
            # sends its version: a flood costs no key exchange.
            log.debug("too many logins under way from %s: connection dropped", self.source)
            raise TooManyStartups(self.source)
        self.gateway.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gateway.connections.discard(self)
        for tunnel in list(self.tunnels):
            tunnel.close("client_disconnected")

    def close(self, reason: str) -> None:
        """Hang up, closing the tunnels first with `reason` for their audit (else
        they would read as closed by the client)."""
        for tunnel in list(self.tunnels):
            tunnel.close(reason)
        if self.conn is not None:
            self.conn.close()

    # -- login: the one-time ticket as password, nothing else ------------------------

    def begin_auth(self, username: str) -> bool:
        return True  # always authenticate; there is no anonymous use

    def password_auth_supported(self) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    async def validate_password(self, username: str, password: str) -> bool:
        try:
            grant = await self.gateway.authenticate(username, password, self.source_ip)
        except Exception as exc:
            # Not the user's fault: no failure is counted. The client is told why
            # it is sent away, not just cut off.
            if not database_down(exc):
                log.exception("gateway login from %s could not be checked", self.source_ip)
                raise
            # A line now and then, not a traceback per attempt of every client.
            self.gateway.quiet.log(
                logging.WARNING,
                "login_database_down",
                "gateway login from %s not checked, the database is not reachable (%s)",
                self.source_ip,
                type(driver_error(exc)).__name__,
            )
            raise asyncssh.ServiceNotAvailable(CANNOT_CHECK) from None
        if grant is None:
            if self.conn is not None:
                self.conn.send_auth_banner(TICKET_REFUSED + "\n")
            return False
        self.grant = grant
        return True

    # -- channels and global requests ----------------------------------------------

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> tuple[asyncssh.SSHTCPChannel[bytes], Coroutine[Any, Any, Bridge]]:
        if self.grant is None or self.conn is None:
            raise _prohibited(ONLY_YOUR_DESKTOP)
        # First: it refuses a channel beyond the caps before one is made.
        opening = self.gateway.open_tunnel(self, dest_host, dest_port)
        channel = self.conn.create_tcp_channel(window=WINDOW, max_pktsize=MAX_PACKET)
        return channel, opening

    def session_requested(self) -> bool:
        raise _prohibited(NO_SESSIONS)

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False  # tcpip-forward (ssh -R)

    def unix_connection_requested(self, dest_path: str) -> bool:
        raise _prohibited(ONLY_YOUR_DESKTOP)  # direct-streamlocal

    def unix_server_requested(self, listen_path: str) -> bool:
        return False  # streamlocal-forward

    def tun_requested(self, unit: int | None) -> bool:
        raise _prohibited(ONLY_YOUR_DESKTOP)

    def tap_requested(self, unit: int | None) -> bool:
        raise _prohibited(ONLY_YOUR_DESKTOP)
