"""Console probes: can a client reach each running desktop, and how fast?

For every running desktop with an endpoint: a TCP connect and, where the
protocol allows, its first handshake step (the RFB banner, the X.224 Connection
Confirm). Latency is the time until the handshake completed. Probes run
concurrently, so a round takes about one timeout however many desktops hang.
The cumulative counters live in the agent state, so a restart or a broker outage
loses no timeout.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from agent.collectors.base import Fields
from agent.handshake import (
    RFB_BANNER_LENGTH,
    TPKT_HEADER_LENGTH,
    HandshakeError,
    connection_request,
    is_connection_confirm,
    parse_rfb_banner,
    tpkt_length,
)
from agent.hypervisors.base import ConsoleProtocol, Desktop

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_CONCURRENCY = 64

ProbeError = Literal["timeout", "refused", "unreachable", "error"]

_UNREACHABLE = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN})
_CONNECTION_REQUEST = connection_request()


@dataclass(frozen=True)
class ProbeOutcome:
    ok: bool
    latency_s: float | None = None
    error: ProbeError | None = None

    def as_report(self) -> Fields:
        """As protocol.ProbeResult."""
        if self.ok:
            return {"ok": True, "latency_s": round(self.latency_s or 0.0, 6)}
        return {"ok": False, "error": self.error}


@dataclass(frozen=True)
class ProbeTotals:
    """Cumulative since the agent state was created."""

    probes_total: int = 0
    timeouts_total: int = 0


def classify(exc: BaseException) -> ProbeError:
    """The report's name for why a probe failed."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE:
        return "unreachable"
    return "error"


def tally(
    totals: ProbeTotals, outcomes: Iterable[ProbeOutcome]
) -> tuple[ProbeTotals, float | None]:
    """The counters after one round, and the round's mean latency of successes."""
    outcomes = list(outcomes)
    latencies = [o.latency_s for o in outcomes if o.ok and o.latency_s is not None]
    updated = ProbeTotals(
        probes_total=totals.probes_total + len(outcomes),
        timeouts_total=totals.timeouts_total + sum(o.error == "timeout" for o in outcomes),
    )
    return updated, (sum(latencies) / len(latencies) if latencies else None)


def probe_stats(totals: ProbeTotals, latency_mean_s: float | None) -> Fields:
    """As protocol.ProbeStats."""
    stats: Fields = {
        "probes_total": totals.probes_total,
        "timeouts_total": totals.timeouts_total,
    }
    if latency_mean_s is not None:
        stats["latency_mean_s"] = round(latency_mean_s, 6)
    return stats


async def _recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await loop.sock_recv(sock, n - len(data))
        if not chunk:
            raise HandshakeError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


async def _handshake(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: ConsoleProtocol
) -> None:
    if protocol is ConsoleProtocol.VNC:
        parse_rfb_banner(await _recv_exactly(loop, sock, RFB_BANNER_LENGTH))
    elif protocol is ConsoleProtocol.RDP:
        await loop.sock_sendall(sock, _CONNECTION_REQUEST)
        header = await _recv_exactly(loop, sock, TPKT_HEADER_LENGTH)
        rest = await _recv_exactly(loop, sock, tpkt_length(header) - TPKT_HEADER_LENGTH)
        if not is_connection_confirm(header + rest):
            raise HandshakeError("RDP server did not confirm the X.224 connection")


async def probe(
    address: str, port: int, protocol: ConsoleProtocol, timeout_s: float = DEFAULT_TIMEOUT_S
) -> ProbeOutcome:
    """Connect and handshake once. Plain sockets on the event loop rather than
    streams: a probe round runs every cycle, and this is what it costs least."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            await loop.sock_connect(sock, (address, port))
            await _handshake(loop, sock, protocol)
        return ProbeOutcome(ok=True, latency_s=time.perf_counter() - started)
    except (OSError, HandshakeError) as exc:  # TimeoutError is an OSError
        return ProbeOutcome(ok=False, error=classify(exc))
    finally:
        sock.close()


async def probe_all(
    desktops: Iterable[Desktop],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> Mapping[str, ProbeOutcome]:
    """Probe every probeable desktop, at most `concurrency` at once; by name."""
    limit = asyncio.Semaphore(concurrency)

    async def one(d: Desktop) -> tuple[str, ProbeOutcome]:
        assert d.address is not None and d.port is not None
        async with limit:
            return d.name, await probe(d.address, d.port, d.protocol, timeout_s)

    results = await asyncio.gather(*(one(d) for d in desktops if d.probeable))
    return dict(results)
