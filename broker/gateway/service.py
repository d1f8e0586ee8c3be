"""The SSH tunnel gateway as the broker runs it: logins, tunnels, the watcher.

`Gateway.start()` loads (or makes) the host key, listens, and starts a watcher
that once a second
- closes the connections of sessions that ended (logged off, ended by an
  administrator or a lifecycle rule): within about a second, on every replica,
  because it asks the database;
- closes tunnels idle longer than `gateway_idle_timeout_s`;
- adds the tunnels' traffic to the telemetry counters;
and every `gateway_activity_interval_s` (30 s) marks this replica's tunnel rows
alive and writes `last_activity_at` of the sessions that had traffic.

Tunnel open and close go through broker.gateway.store (session state, audit).
If this process dies with tunnels open, their rows stop being marked; after four
intervals (two minutes) the lifecycle job deletes them and the sessions become
disconnected (broker.gateway.store.purge_stale). Clients reconnect meanwhile
with a new ticket, through another replica or this one restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import Coroutine
from typing import Any

import asyncssh

from broker.gateway import hostkey, store, tickets
from broker.gateway.bridge import Bridge
from broker.gateway.policy import ForwardRules, may_forward
from broker.gateway.reasons import (
    CANNOT_OPEN,
    CLOSED_WHILE_OPENING,
    DESKTOP_GONE,
    DESKTOP_SILENT,
    ONLY_YOUR_DESKTOP,
    SESSION_ENDED,
)
from broker.gateway.server import PROHIBITED, GatewayConnection, Grant, server_options
from broker.gateway.slowdown import FailureDelays, may_start
from broker.gateway.tunnels import (
    STALE_AFTER_INTERVALS,
    WATCH_INTERVAL_S,
    Tunnel,
    TunnelRegistry,
    active_sessions,
    destination,
    due,
    idle_expired,
    last_traffic,
    over_cap,
    strays,
)
from broker.logthrottle import LogThrottle
from broker.net import parse_networks
from broker.runtime import Runtime
from broker.store.db_errors import database_down, driver_error

log = logging.getLogger(__name__)

# Forward refusals one connection may collect before the gateway hangs up on it.
MAX_REFUSALS = 5
# How long stop() waits for the last tunnel records to be written.
STOP_GRACE_S = 5.0


class Gateway:
    def __init__(self, rt: Runtime) -> None:
        settings = rt.settings
        self.rt = rt
        self.replica = uuid.uuid4().hex
        self.rules = ForwardRules(
            allow_loopback=settings.gateway_allow_loopback,
            denied_networks=parse_networks(settings.gateway_denied_networks),
            desktop_networks=parse_networks(settings.gateway_desktop_networks),
        )
        self.delays = FailureDelays(
            settings.gateway_auth_delay_s, settings.gateway_auth_delay_max_s, time.monotonic
        )
        self.tunnels = TunnelRegistry()
        self.quiet = LogThrottle(log)
        self.connections: set[GatewayConnection] = set()
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._unrecorded: set[Tunnel] = set()  # closed, row not yet deleted
        self._heartbeat_at: float | None = None
        self._touched_at: float | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        settings = self.rt.settings
        key = hostkey.load_or_create(settings.gateway_host_key_file)
        self.rt.gateway_fingerprint = hostkey.fingerprint(key)
        self._acceptor = await asyncssh.create_server(
            lambda: GatewayConnection(self),
            settings.gateway_host,
            settings.gateway_port,
            **server_options(settings, key),
        )
        self._watcher = asyncio.create_task(self._watch(), name="vdi-gateway-watch")
        log.info(
            "SSH gateway listening on %s:%d, host key %s",
            settings.gateway_host,
            self.port,
            self.rt.gateway_fingerprint,
        )

    @property
    def port(self) -> int:
        assert self._acceptor is not None, "the gateway is not started"
        port: int = self._acceptor.get_port()
        return port

    async def stop(self) -> None:
        """Stop listening, close every tunnel (recorded as closed) and connection."""
        if self._acceptor is not None:
            self._acceptor.close()
        for tunnel in self.tunnels:
            tunnel.close("gateway_stopped")
        for connection in list(self.connections):
            connection.close("gateway_stopped")
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=STOP_GRACE_S)
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self._record_unrecorded()
        if self._acceptor is not None:
            await self._acceptor.wait_closed()

    # -- login ------------------------------------------------------------------------

    def may_start(self, source: str) -> bool:
        """May one more connection from `source` (a source key) begin to log in?"""
        settings = self.rt.settings
        return may_start(
            (c.source for c in self.connections if c.grant is None),
            source,
            per_source=settings.gateway_max_startups_per_source,
            total=settings.gateway_max_startups,
        )

    async def authenticate(self, username: str, ticket: str, source_ip: str | None) -> Grant | None:
        """Spend the ticket; a grant for its session if it was valid, this user's and
        the session can be connected to. Failures wait, count and are audited."""
        delay = self.delays.delay(source_ip, username)
        if delay:
            await asyncio.sleep(delay)
        now = self.rt.clock.now()
        async with self.rt.db.write_conn() as conn:
            redeemed = await tickets.redeem(conn, ticket, username, now)
            target = await store.target(conn, redeemed.session_id) if redeemed else None
            if redeemed is not None and target is not None and target.connectable:
                return Grant(redeemed.session_id, redeemed.user_id, redeemed.user_name)
            reason = "invalid_ticket" if redeemed is None else "session_not_connectable"
            await store.auth_failed(
                conn, username=username, source_ip=source_ip, reason=reason, now=now
            )
        self.rt.telemetry.gateway_auth_failed()
        self.delays.failed(source_ip, username)
        log.info("gateway login failed from %s: %s", source_ip, reason)
        return None

    # -- tunnels ----------------------------------------------------------------------

    def open_tunnel(
        self, connection: GatewayConnection, host: str, port: int
    ) -> Coroutine[Any, Any, Bridge]:
        """Begin a direct-tcpip channel's tunnel: to the session's stored desktop
        endpoint, if that is what the client asked for; else refuse.

        Runs when the channel is requested, before anything is awaited: a channel
        beyond the caps is refused at once, and the tunnel is tracked on its
        connection at once, so that the caps count channels still opening and a
        connection lost from then on closes it (asyncssh discards a bridge whose
        connection went away without telling it). The coroutine returned opens it.
        """
        grant = connection.grant
        assert grant is not None
        self._check_caps(connection, grant)

        def on_close(_: Bridge) -> None:
            self._closed(connection, tunnel)

        tunnel = Tunnel(
            id=uuid.uuid4().hex,
            session_id=grant.session_id,
            user=grant.user,
            source_ip=connection.source_ip,
            destination=destination(host, port),
            bridge=Bridge(on_close),
            opened_at=self.rt.clock.now(),
        )
        connection.tunnels.add(tunnel)
        return self._opening(connection, grant, tunnel, host, port)

    def _check_caps(self, connection: GatewayConnection, grant: Grant) -> None:
        """Refuse a channel beyond the tunnel caps: no database work, and at most
        one log line in a while (a client can ask for thousands a second)."""
        settings = self.rt.settings
        on_session = sum(
            len(c.tunnels)
            for c in self.connections
            if c.grant is not None and c.grant.session_id == grant.session_id
        )
        cap = over_cap(
            len(connection.tunnels),
            on_session,
            per_connection=settings.gateway_max_tunnels_per_connection,
            per_session=settings.gateway_max_tunnels_per_session,
        )
        if cap is None:
            return
        self.quiet.log(
            logging.WARNING,
            "tunnel_cap",
            "refused a tunnel of %s from %s: the %s has as many as it may have",
            grant.user,
            connection.source_ip,
            cap,
        )
        raise asyncssh.ChannelOpenError(
            asyncssh.OPEN_RESOURCE_SHORTAGE, f"Too many tunnels open on this {cap}."
        )

    async def _opening(
        self, connection: GatewayConnection, grant: Grant, tunnel: Tunnel, host: str, port: int
    ) -> Bridge:
        try:
            return await self._open_tunnel(connection, grant, tunnel, host, port)
        except asyncssh.ChannelOpenError:
            raise
        except Exception as exc:
            # The database is away (or out of file descriptors): refuse this
            # channel, keep the connection. Not a broker bug to trace each time.
            self.quiet.log(
                logging.WARNING,
                "tunnel_failed",
                "could not open a tunnel for %s: %s",
                connection.source_ip,
                exc,
            )
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, CANNOT_OPEN) from None
        finally:
            # Refused or failed: untracked (registered ones are recorded as closed).
            if not tunnel.registered:
                tunnel.close("not_opened")

    async def _open_tunnel(
        self, connection: GatewayConnection, grant: Grant, tunnel: Tunnel, host: str, port: int
    ) -> Bridge:
        _gone_meanwhile(tunnel)  # the connection dropped before this task ran
        async with self.rt.db.read_conn() as conn:
            target = await store.target(conn, grant.session_id)
        if target is None or not target.connectable:
            gone = target is not None and target.missing
            raise asyncssh.ChannelOpenError(PROHIBITED, DESKTOP_GONE if gone else SESSION_ENDED)
        verdict = may_forward(host, port, target.address, target.port, self.rules)
        if not verdict.allowed:
            assert verdict.refusal is not None
            await self._refused(connection, grant, host, port, verdict.refusal.value)
            raise asyncssh.ChannelOpenError(PROHIBITED, ONLY_YOUR_DESKTOP)
        _gone_meanwhile(tunnel)
        assert target.address is not None and target.port is not None
        # The stored endpoint, never the client's spelling of it.
        address, desktop_port = target.address, target.port
        tunnel.destination = destination(address, desktop_port)
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(
                loop.create_connection(tunnel.bridge.socket_protocol, address, desktop_port),
                self.rt.settings.gateway_connect_timeout_s,
            )
        except (OSError, TimeoutError) as exc:
            tunnel.close("connect_failed")
            self.quiet.log(
                logging.INFO,
                "desktop_silent",
                "desktop %s does not answer: %s",
                tunnel.destination,
                exc,
            )
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, DESKTOP_SILENT) from None
        _gone_meanwhile(tunnel)
        try:
            registered = await self._register(tunnel, target.desktop)
        except BaseException:
            tunnel.close("broker_error")
            raise
        if not registered:
            tunnel.close("session_ended")
            raise asyncssh.ChannelOpenError(PROHIBITED, SESSION_ENDED)
        tunnel.registered = True
        self.tunnels.add(tunnel)
        self.rt.telemetry.gateway_tunnels = len(self.tunnels)
        if tunnel.bridge.closed:
            # The desktop hung up, or the client's connection dropped, while the
            # tunnel was being recorded: its close went unrecorded, so record it now.
            self._closed(connection, tunnel)
            _gone_meanwhile(tunnel)
        return tunnel.bridge

    async def _register(self, tunnel: Tunnel, desktop: str | None) -> bool:
        async with self.rt.db.write_conn() as conn:
            return await store.register(
                conn,
                tunnel_id=tunnel.id,
                session_id=tunnel.session_id,
                replica=self.replica,
                user=tunnel.user,
                source_ip=tunnel.source_ip,
                destination=tunnel.destination,
                desktop=desktop,
                now=tunnel.opened_at,
            )

    async def _refused(
        self, connection: GatewayConnection, grant: Grant, host: str, port: int, reason: str
    ) -> None:
        connection.refusals += 1
        async with self.rt.db.write_conn() as conn:
            await store.refused(
                conn,
                user=grant.user,
                source_ip=connection.source_ip,
                session_id=grant.session_id,
                requested=f"{host}:{port}",
                reason=reason,
                now=self.rt.clock.now(),
            )
        if connection.refusals >= MAX_REFUSALS:
            log.warning(
                "closing gateway connection of %s from %s after %d refused forwards",
                grant.user,
                connection.source_ip,
                connection.refusals,
            )
            connection.close("too_many_refusals")

    def _closed(self, connection: GatewayConnection, tunnel: Tunnel) -> None:
        """The bridge closed (from either side, or by us): record it once."""
        connection.tunnels.discard(tunnel)
        if not tunnel.registered or tunnel not in self.tunnels:
            return
        self.tunnels.discard(tunnel)
        self.rt.telemetry.gateway_tunnels = len(self.tunnels)
        self._flush_traffic([tunnel])
        self._spawn(self._record_closed(tunnel))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record_closed(self, tunnel: Tunnel) -> None:
        try:
            async with self.rt.db.write_conn() as conn:
                await store.unregister(conn, self._closing(tunnel), self.rt.clock.now())
        except Exception as exc:
            if database_down(exc):
                self.quiet.log(
                    logging.WARNING,
                    "record_database_down",
                    "could not record the close of tunnel %s, the database is not "
                    "reachable (%s); retrying",
                    tunnel.id,
                    type(driver_error(exc)).__name__,
                )
            else:
                log.exception("could not record the close of tunnel %s; retrying", tunnel.id)
            self._unrecorded.add(tunnel)

    async def _record_unrecorded(self) -> None:
        for tunnel in list(self._unrecorded):
            self._unrecorded.discard(tunnel)
            await self._record_closed(tunnel)

    @staticmethod
    def _closing(tunnel: Tunnel) -> store.Closed:
        return store.Closed(
            tunnel_id=tunnel.id,
            session_id=tunnel.session_id,
            user=tunnel.user,
            source_ip=tunnel.source_ip,
            destination=tunnel.destination,
            reason=tunnel.end_reason,
            duration_s=time.monotonic() - tunnel.opened_mono,
            bytes_up=tunnel.up,
            bytes_down=tunnel.down,
        )

    # -- the watcher -------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            try:
                await self.watch_once()
            except Exception as exc:
                if not database_down(exc):
                    log.exception("gateway watcher round failed; next round in a second")
                    continue
                # Open tunnels keep running meanwhile; one line now and then, not
                # a traceback a second for as long as the database is away.
                self.quiet.log(
                    logging.WARNING,
                    "watch_database_down",
                    "gateway watcher: the database is not reachable (%s); open tunnels "
                    "keep running, ended sessions are closed once it is back",
                    type(driver_error(exc)).__name__,
                )

    async def watch_once(self) -> None:
        """One round of the watcher (public for tests)."""
        now = time.monotonic()
        await self._close_ended_sessions()
        timeout = self.rt.settings.gateway_idle_timeout_s
        for tunnel in self.tunnels:
            total = tunnel.up + tunnel.down
            tunnel.last_traffic = last_traffic(total, tunnel.seen_total, tunnel.last_traffic, now)
            tunnel.seen_total = total
            if idle_expired(tunnel.last_traffic, now, timeout):
                tunnel.close("idle_timeout")
        self._flush_traffic(self.tunnels)
        await self._record_unrecorded()
        every = self.rt.settings.gateway_activity_interval_s
        if (self.tunnels or self._unrecorded) and due(self._heartbeat_at, now, every):
            await self._heartbeat(now)

    async def _close_ended_sessions(self) -> None:
        """Close the connections and tunnels of sessions that ended, and tunnels
        whose SSH connection is gone (it dropped while they were opening)."""
        held = [t for c in self.connections for t in c.tunnels]
        for tunnel in strays(self.tunnels, held):
            tunnel.close("client_disconnected")
        granted = {c.grant.session_id for c in self.connections if c.grant is not None}
        granted.update(t.session_id for t in self.tunnels)
        if not granted:
            return
        async with self.rt.db.read_conn() as conn:
            gone = await store.ended(conn, granted)
        for connection in list(self.connections):
            if connection.grant is not None and connection.grant.session_id in gone:
                connection.close("session_ended")
        for tunnel in self.tunnels:
            if tunnel.session_id in gone:
                tunnel.close("session_ended")

    def _flush_traffic(self, tunnels: TunnelRegistry | list[Tunnel]) -> None:
        up = down = 0
        for tunnel in tunnels:
            u, d = tunnel.unflushed()
            up += u
            down += d
        if up or down:
            self.rt.telemetry.gateway_traffic(up, down)

    async def _heartbeat(self, now: float) -> None:
        wall = self.rt.clock.now()
        busy = active_sessions(list(self.tunnels), self._touched_at)
        async with self.rt.db.write_conn() as conn:
            await store.heartbeat(conn, self.replica, wall)
            if busy:
                await store.touch(conn, busy, wall)
        self._heartbeat_at = self._touched_at = now


def _gone_meanwhile(tunnel: Tunnel) -> None:
    """Stop opening a tunnel whose bridge closed during an await: its client's
    connection dropped (connection_lost closed it) or its desktop hung up."""
    if tunnel.bridge.closed:
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, CLOSED_WHILE_OPENING)


async def purge_stale_tunnels(rt: Runtime) -> int:
    """Lifecycle job: forget tunnel rows of replicas that died (see module doc)."""
    now = rt.clock.now()
    stale_s = STALE_AFTER_INTERVALS * rt.settings.gateway_activity_interval_s
    async with rt.db.write_conn() as conn:
        count = await store.purge_stale(conn, now - dt.timedelta(seconds=stale_s), now)
    if count:
        # Said here too, not only in the audit: the journal is where ops look
        # after a replica died (audit event tunnels_lost has the replicas).
        log.warning(
            "%d tunnel(s) of a broker replica that stopped without closing them were "
            "cleared; sessions with no tunnel left are disconnected",
            count,
        )
    return count
