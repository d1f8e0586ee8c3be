"""Slowing down sources of failed gateway logins, in bounded memory, and
limiting the logins a source may have under way at once. Pure logic.

A ticket has 256 bits, so guessing one is hopeless; what failed attempts cost is
database writes (every attempt spends a ticket look-up) and audit rows. A
source with recent failures therefore waits before each further answer: the
first delay after one failure, doubled per further failure, up to a maximum
(at most MAX_AUTH_DELAY_S, which vdi-connect's wait for an answer exceeds).

The count is kept per source *and user name*: staff behind one NAT (a town
hall, a mobile carrier) share an address, and one person's stale tickets must
not make everybody else's correct ones wait up to the maximum. Someone who
varies the name escapes that count, so the source's failures count too, but
only beyond SHARED_SOURCE_GRACE of them: a flood from one address still slows
down, a few colleagues' mistakes do not.

Failures are forgotten some minutes after the last one, and at most
`max_sources` keys are remembered (the oldest go first), so a flood from
many addresses cannot exhaust memory. IPv6 sources count per /64, the block a
single customer line usually gets. A success does not clear the count: an
insider with a valid ticket of their own could otherwise launder it.

Connections that have not logged in yet are limited per source and in all
(`may_start`), as sshd's MaxStartups does: delays alone do not stop a source
from opening thousands of connections that each sit out the login timeout.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from broker.net import source_key

FORGET_AFTER_S = 600.0
MAX_SOURCES = 10_000
# The longest any gateway makes a login wait (gateway_auth_delay_max_s may not
# exceed it): vdi-connect waits this plus a margin for the answer to its ticket.
MAX_AUTH_DELAY_S = 30.0
# Failures from one source, whatever the names, before the source as a whole
# slows down.
SHARED_SOURCE_GRACE = 10


def may_start(pending: Iterable[str], key: str, *, per_source: int, total: int) -> bool:
    """May one more connection from source `key` begin to log in, while
    connections from the sources `pending` (keys too) are still logging in?"""
    everyone = mine = 0
    for other in pending:
        everyone += 1
        mine += other == key
    return everyone < total and mine < per_source


def delay_for(failures: int, first_s: float, max_s: float) -> float:
    """Seconds to wait before answering a source with `failures` recent failures."""
    if failures <= 0 or first_s <= 0:
        return 0.0
    return float(min(max_s, first_s * 2 ** min(failures - 1, 30)))


@dataclass
class _Record:
    failures: int
    last_at: float


class FailureDelays:
    def __init__(
        self,
        first_s: float,
        max_s: float,
        now: Callable[[], float],
        *,
        forget_after_s: float = FORGET_AFTER_S,
        max_sources: int = MAX_SOURCES,
    ) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self.forget_after_s = forget_after_s
        self.max_sources = max_sources
        self._now = now
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def delay(self, ip: str | None, user: str) -> float:
        """How long to wait before answering a login attempt as `user` from `ip`."""
        source = source_key(ip)
        mine = self._failures(_pair(source, user))
        everyone = self._failures(source) - SHARED_SOURCE_GRACE
        return delay_for(max(mine, everyone), self.first_s, self.max_s)

    def failed(self, ip: str | None, user: str) -> None:
        source = source_key(ip)
        self._count(_pair(source, user))
        self._count(source)

    def _failures(self, key: str) -> int:
        record = self._current(key)
        return record.failures if record else 0

    def _count(self, key: str) -> None:
        record = self._current(key)
        now = self._now()
        if record is None:
            record = self._records[key] = _Record(0, now)
            while len(self._records) > self.max_sources:
                self._records.popitem(last=False)
        record.failures += 1
        record.last_at = now
        self._records.move_to_end(key)

    def _current(self, key: str) -> _Record | None:
        record = self._records.get(key)
        if record is not None and self._now() - record.last_at > self.forget_after_s:
            del self._records[key]
            return None
        return record


def _pair(source: str, user: str) -> str:
    # A name cannot hold a NUL byte where it came from (SSH strings can, but then
    # it is only a different, odd name of the same source).
    return f"{source}\0{user}"
