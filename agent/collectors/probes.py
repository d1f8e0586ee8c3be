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
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from agent.collectors.base import Fields
from agent.handshake import (
    RFB_BANNER_LENGTH,
    HandshakeError,
    connection_request,
    is_connection_confirm,
    parse_rfb_banner,
    tpkt_bytes_needed,
)
from agent.hypervisors.base import ConsoleProtocol, Desktop

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_CONCURRENCY = 64

ProbeError = Literal["timeout", "refused", "unreachable", "error"]

_UNREACHABLE = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN})
_CONNECTION_REQUEST = connection_request()
_HANDSHAKE_READ = 1024


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


@dataclass(frozen=True)
class TimeoutChanges:
    """How the desktops whose console probes time out changed in one round."""

    timing_out: frozenset[str]  # after this round
    started: tuple[str, ...]  # newly timing out
    ended: tuple[tuple[str, ProbeOutcome], ...]  # probed again without a timeout


def timeout_changes(
    before: frozenset[str], listed: Iterable[str], outcomes: Mapping[str, ProbeOutcome]
) -> TimeoutChanges:
    """Compare a round's outcomes with the desktops that timed out before.

    A listed desktop without an outcome this round (stopped, or the probe round
    failed) keeps its standing until it is probed again, so a failed round does
    not make every hanging desktop news again; one no longer listed is forgotten.
    """
    listed = set(listed)
    now = {name for name, o in outcomes.items() if o.error == "timeout"}
    kept = {name for name in before if name in listed and name not in outcomes}
    return TimeoutChanges(
        timing_out=frozenset(now | kept),
        started=tuple(sorted(now - before)),
        ended=tuple((name, outcomes[name]) for name in sorted(before - now) if name in outcomes),
    )


def _names(names: Sequence[str], shown: int = 20) -> str:
    """A name list for one journal line, bounded for a host where all hang at once."""
    text = ", ".join(names[:shown])
    return text if len(names) <= shown else f"{text} and {len(names) - shown} more"


def log_timeout_changes(changes: TimeoutChanges, timeout_s: float) -> None:
    """Name in the journal the desktops whose probes began or stopped timing out
    (the runbook of VdiDesktopProbeTimeouts sends ops here); one line per change,
    not one per round."""
    if changes.started:
        log.warning(
            "console probe timed out (after %.3g s) for %d desktop(s): %s",
            timeout_s,
            len(changes.started),
            _names(changes.started),
        )
    answering = [name for name, o in changes.ended if o.ok]
    if answering:
        log.info(
            "console probe answers again for %d desktop(s): %s",
            len(answering),
            _names(answering),
        )
    failing = [f"{name} ({o.error})" for name, o in changes.ended if not o.ok]
    if failing:
        log.info("console probe no longer times out but fails for: %s", _names(failing))


@dataclass(frozen=True)
class FailureChanges:
    """How the desktops whose console probes fail other than by a timeout (refused,
    unreachable, no RDP or VNC handshake) changed in one round."""

    failing: Mapping[str, ProbeError]  # after this round
    started: tuple[tuple[str, ProbeError], ...]  # newly failing, or failing otherwise
    ended: tuple[str, ...]  # answering again


def failure_changes(
    before: Mapping[str, ProbeError],
    listed: Iterable[str],
    outcomes: Mapping[str, ProbeOutcome],
) -> FailureChanges:
    """Like timeout_changes, for the failures that are not timeouts: the broker
    takes these desktops out of service just the same (VdiDesktopsOutOfService),
    but no timeout counter shows them. A desktop that turns to timing out is the
    timeout log's news and is dropped here without a line."""
    listed = set(listed)
    now: dict[str, ProbeError] = {
        name: o.error
        for name, o in outcomes.items()
        if not o.ok and o.error is not None and o.error != "timeout"
    }
    kept = {name: e for name, e in before.items() if name in listed and name not in outcomes}
    return FailureChanges(
        failing={**kept, **now},
        started=tuple((name, e) for name, e in sorted(now.items()) if before.get(name) != e),
        ended=tuple(name for name in sorted(before) if name in outcomes and outcomes[name].ok),
    )


_FAILURE_WORDS: dict[ProbeError, str] = {
    "refused": "refused the connection",
    "unreachable": "is unreachable",
    "error": "gave no RDP or VNC answer",
}


def log_failure_changes(changes: FailureChanges, endpoints: Mapping[str, str]) -> None:
    """Name in the journal, with the address probed, the desktops whose console
    began to fail (the runbook of VdiDesktopsOutOfService sends ops here) or
    answers again; one line per kind of change, not one per round."""
    for error, words in _FAILURE_WORDS.items():
        names = [
            f"{name} ({endpoints.get(name, 'no address')})"
            for name, e in changes.started
            if e == error
        ]
        if names:
            log.warning("console %s for %d desktop(s): %s", words, len(names), _names(names))
    if changes.ended:
        log.info(
            "console probe answers again for %d desktop(s): %s",
            len(changes.ended),
            _names(changes.ended),
        )


def endpoint(address: str, port: int) -> str:
    """ADDRESS:PORT as ops would type it, an IPv6 address in brackets."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _bytes_needed(protocol: ConsoleProtocol, received: bytes) -> int:
    """How many bytes of the server's answer complete the handshake."""
    if protocol is ConsoleProtocol.VNC:
        return RFB_BANNER_LENGTH
    if protocol is ConsoleProtocol.RDP:
        return tpkt_bytes_needed(received)
    return 0


def _check_answer(protocol: ConsoleProtocol, answer: bytes) -> None:
    if protocol is ConsoleProtocol.VNC:
        parse_rfb_banner(answer[:RFB_BANNER_LENGTH])
    elif protocol is ConsoleProtocol.RDP and not is_connection_confirm(
        answer[: tpkt_bytes_needed(answer)]
    ):
        raise HandshakeError("RDP server did not confirm the X.224 connection")


@dataclass(frozen=True)
class Target:
    address: str
    port: int
    protocol: ConsoleProtocol


class _Probe:
    """One probe as a small state machine on the event loop's socket callbacks:
    connect, send the request (RDP), read until the answer is complete.

    Callbacks rather than a coroutine with awaits: every running desktop is
    probed every cycle, and this way the probes' user CPU time is about a third
    (measured with 20 simulated desktops: no task, future or timeout object per
    step; the kernel's share of a connection stays what it is).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        target: Target,
        timeout_s: float,
        done: Callable[[ProbeOutcome], None],
    ) -> None:
        self._loop = loop
        self._target = target
        self._timeout_s = timeout_s
        self._done = done
        self._sock: socket.socket | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._received = b""
        self._started = 0.0
        self._finished = False

    def start(self) -> None:
        target = self._target
        try:
            # endpoints are IP literals (hypervisors check them), so a colon means IPv6
            family = socket.AF_INET6 if ":" in target.address else socket.AF_INET
            self._sock = sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            self._started = time.perf_counter()
            code = sock.connect_ex((target.address, target.port))
        except OSError as exc:
            self._fail(exc)
            return
        if code not in (0, errno.EINPROGRESS):
            self._fail(OSError(code, "connect failed"))
            return
        self._timer = self._loop.call_later(self._timeout_s, self._fail, TimeoutError())
        self._loop.add_writer(sock.fileno(), self._on_connected)

    def _on_connected(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, "connect failed")
            self._loop.remove_writer(sock.fileno())
            if self._target.protocol is ConsoleProtocol.TCP:
                self._succeed()
                return
            if self._target.protocol is ConsoleProtocol.RDP:
                sock.send(_CONNECTION_REQUEST)  # 19 bytes into an empty send buffer
            self._loop.add_reader(sock.fileno(), self._on_readable)
        except Exception as exc:  # whatever happens, the round must hear of this probe
            self._fail(exc)

    def _on_readable(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            chunk = sock.recv(_HANDSHAKE_READ)
            if not chunk:
                raise HandshakeError(f"connection closed after {len(self._received)} bytes")
            self._received += chunk
            if len(self._received) < _bytes_needed(self._target.protocol, self._received):
                return
            _check_answer(self._target.protocol, self._received)
            self._succeed()
        except Exception as exc:
            self._fail(exc)

    def _succeed(self) -> None:
        self._finish(ProbeOutcome(ok=True, latency_s=time.perf_counter() - self._started))

    def _fail(self, exc: BaseException) -> None:
        self._finish(ProbeOutcome(ok=False, error=classify(exc)))

    def _finish(self, outcome: ProbeOutcome) -> None:
        if self._finished:
            return
        self._finished = True
        if self._timer is not None:
            self._timer.cancel()
        if self._sock is not None:
            if self._sock.fileno() >= 0:
                self._loop.remove_writer(self._sock.fileno())
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
        self._done(outcome)


async def probe(
    address: str, port: int, protocol: ConsoleProtocol, timeout_s: float = DEFAULT_TIMEOUT_S
) -> ProbeOutcome:
    """Connect and handshake once."""
    outcomes = await probe_many([Target(address, port, protocol)], timeout_s)
    return outcomes[0]


async def probe_many(
    targets: Sequence[Target],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> list[ProbeOutcome]:
    """Probe every target, at most `concurrency` at once; outcomes in target order.
    Each probe's timeout starts when that probe starts."""
    loop = asyncio.get_running_loop()
    outcomes: list[ProbeOutcome | None] = [None] * len(targets)
    finished = loop.create_future()
    next_index = 0
    remaining = len(targets)

    def start_next() -> None:
        nonlocal next_index
        if next_index < len(targets):
            index = next_index
            next_index += 1
            _Probe(loop, targets[index], timeout_s, lambda o: done(index, o)).start()

    def done(index: int, outcome: ProbeOutcome) -> None:
        nonlocal remaining
        outcomes[index] = outcome
        remaining -= 1
        if remaining == 0:
            if not finished.done():
                finished.set_result(None)
        elif next_index < len(targets) and not finished.cancelled():
            # Not called directly: a probe can fail inside start(), and thousands of
            # those in a row must not nest calls thousands deep.
            loop.call_soon(start_next)

    if not targets:
        return []
    for _ in range(min(concurrency, len(targets))):
        start_next()
    await finished
    return [o for o in outcomes if o is not None]


async def probe_all(
    desktops: Iterable[Desktop],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> Mapping[str, ProbeOutcome]:
    """Probe every probeable desktop; outcomes by desktop name."""
    names = []
    targets = []
    for d in desktops:
        if d.probeable:
            assert d.address is not None and d.port is not None
            names.append(d.name)
            targets.append(Target(d.address, d.port, d.protocol))
    return dict(zip(names, await probe_many(targets, timeout_s, concurrency), strict=True))
