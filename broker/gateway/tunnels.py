"""Bookkeeping of open tunnels: what each carries, and the rules a timer applies.

A `Tunnel` is one forwarded channel: its bridge (the data path) plus what the
audit log and the watcher need. The data path only adds to the bridge's
counters; the watcher reads them once a tick to flush telemetry, notice idle
tunnels and decide which sessions' `last_activity_at` to refresh (throttled).
The rules are plain functions of numbers, tested without I/O.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from broker.gateway.bridge import Bridge

# How often the watcher looks at open tunnels (revocation within 5 s needs <= ~2 s).
WATCH_INTERVAL_S = 1.0
# Tunnel rows not marked alive for this many activity intervals (the setting
# gateway_activity_interval_s) belong to a replica that died.
STALE_AFTER_INTERVALS = 4


@dataclass(eq=False)
class Tunnel:
    id: str
    session_id: str
    user: str
    source_ip: str | None
    destination: str  # "address:port" as connected to
    bridge: Bridge
    opened_at: dt.datetime
    opened_mono: float = field(default_factory=time.monotonic)
    # Written by the watcher: the counters' total at its last look, and when
    # they last moved.
    seen_total: int = 0
    last_traffic: float = field(default_factory=time.monotonic)
    # Bytes already added to the telemetry counters.
    flushed_up: int = 0
    flushed_down: int = 0
    registered: bool = False  # its row is in the database
    close_reason: str | None = None

    @property
    def up(self) -> int:
        """Client to desktop."""
        return self.bridge.from_channel

    @property
    def down(self) -> int:
        """Desktop to client."""
        return self.bridge.from_socket

    @property
    def end_reason(self) -> str:
        """Why it closed, for the audit: the gateway's reason if it closed it,
        else whether the client's connection was lost or the tunnel closed."""
        if self.close_reason is not None:
            return self.close_reason
        return "client_disconnected" if self.bridge.dropped else "closed"

    def close(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        self.bridge.close()

    def unflushed(self) -> tuple[int, int]:
        """Bytes up and down since the last call (for the telemetry counters)."""
        up, down = self.up, self.down
        delta = (up - self.flushed_up, down - self.flushed_down)
        self.flushed_up, self.flushed_down = up, down
        return delta


class TunnelRegistry:
    """The open tunnels of this process, by id."""

    def __init__(self) -> None:
        self._tunnels: dict[str, Tunnel] = {}

    def add(self, tunnel: Tunnel) -> None:
        self._tunnels[tunnel.id] = tunnel

    def discard(self, tunnel: Tunnel) -> None:
        self._tunnels.pop(tunnel.id, None)

    def __len__(self) -> int:
        return len(self._tunnels)

    def __contains__(self, tunnel: object) -> bool:
        return isinstance(tunnel, Tunnel) and self._tunnels.get(tunnel.id) is tunnel

    def __iter__(self) -> Iterator[Tunnel]:
        return iter(list(self._tunnels.values()))


# -- rules (pure) -------------------------------------------------------------------


def last_traffic(total: int, seen_total: int, last_traffic_at: float, now: float) -> float:
    """When traffic was last seen: now if the counters moved since the last look."""
    return now if total != seen_total else last_traffic_at


def idle_expired(last_traffic_at: float, now: float, timeout_s: float) -> bool:
    """A tunnel without traffic for `timeout_s` is closed (0: never)."""
    return timeout_s > 0 and now - last_traffic_at >= timeout_s


def due(last_at: float | None, now: float, every_s: float) -> bool:
    """A throttled action (heartbeat, activity refresh) is due."""
    return last_at is None or now - last_at >= every_s


def active_sessions(tunnels: Iterator[Tunnel] | list[Tunnel], since: float | None) -> set[str]:
    """Sessions with traffic on any tunnel after `since` (None: ever)."""
    return {
        t.session_id for t in tunnels if t.seen_total and (since is None or t.last_traffic > since)
    }


def over_cap(
    on_connection: int, on_session: int, *, per_connection: int, per_session: int
) -> str | None:
    """Why one more tunnel may not open, given the tunnels already open (or
    opening) on its SSH connection and on its session in this process: "connection"
    or "session"; None when it may. An RDP or VNC client needs a handful; each
    tunnel holds two file descriptors, so a client opening hundreds could starve
    the broker of them."""
    if on_connection >= per_connection:
        return "connection"
    if on_session >= per_session:
        return "session"
    return None


def strays(registered: Iterable[Tunnel], held: Iterable[Tunnel]) -> list[Tunnel]:
    """Registered tunnels no live SSH connection holds: their connection is gone
    (it dropped while they opened), so nothing else will ever close them."""
    live = set(held)
    return [t for t in registered if t not in live]


def destination(address: str, port: int) -> str:
    """`address:port`, with IPv6 addresses in brackets."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
