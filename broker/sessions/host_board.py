"""Placement's board of hosts: every host's figures and session counts, as one
process last read them, kept for a moment.

Ranking the hosts for a request needs all of them: 500 host rows with their open
sessions and logons were a third of what a session request cost. Between two
requests a host's figures change only with its agent's next report; its
session counts change with each assignment, and the assignments of this process
are added to the board at once (`took`), so a logon storm through one broker
still spreads over the hosts. Other brokers' assignments, sessions that end and
reports show once the board is read again, after `ttl_s`. The ranking built
from a reading is kept with it, and an assignment moves only its host
(broker.placement.ranking).

The board only ranks. Whatever could refuse a request, or hand out what may not
be handed out, is read live in the request's transaction: the pool's licences,
the department cap, whether the chosen desktop is free, and whether its host is
up and active (broker.sessions.snapshot). Requests that count capacity over all
hosts (a pool with a priority reserve) or need one host's state (a persistent
desktop) do not use the board at all.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from broker.placement.model import HostView, PoolDesktops
from broker.placement.ranking import HostRanking
from broker.sessions.host_views import HostFigures

# A host's figures, and the requested pool's open sessions there.
HostRow = tuple[HostFigures, int]


@dataclass
class _Reading:
    rows: list[HostRow]
    index: dict[int, int]  # host id -> position in rows
    read_at: dt.datetime  # by the broker's clock
    read_mono: float
    # The hosts ranked from these rows for requesters without a critical team,
    # with the pool's desktops per host they were built with; built on first
    # use, and `took` names the hosts whose rows have changed since.
    ranking: HostRanking | None = None
    ranked_with: Mapping[int, PoolDesktops] | None = None
    changed: set[int] = field(default_factory=set)


class HostBoard:
    """The host rows of each pool, valid for `ttl_s` seconds by both the
    monotonic clock and the broker's clock (tests move the latter: a reading from
    before a jump in time is not used after it)."""

    def __init__(self, ttl_s: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._monotonic = monotonic
        self._pools: dict[int, _Reading] = {}

    def rows(self, pool_id: int, now: dt.datetime) -> Sequence[HostRow] | None:
        """The pool's host rows, or None if there is no fresh reading."""
        reading = self._fresh(pool_id, now)
        return None if reading is None else reading.rows

    def ranking(
        self,
        pool_id: int,
        now: dt.datetime,
        desktops_per_host: Mapping[int, PoolDesktops],
        view: Callable[[HostRow], HostView],
    ) -> HostRanking | None:
        """The pool's hosts ranked for a requester without a critical team, by
        the fresh reading (None without one). `view` builds a host's view from
        its row with these desktops per host; a ranking built with other ones
        is built again."""
        reading = self._fresh(pool_id, now)
        if reading is None:
            return None
        if reading.ranking is None or reading.ranked_with is not desktops_per_host:
            reading.ranking = HostRanking.of(view(row) for row in reading.rows)
            reading.ranked_with = desktops_per_host
        elif reading.changed:
            changed = [view(reading.rows[reading.index[h]]) for h in reading.changed]
            reading.ranking = reading.ranking.with_hosts(changed)
        reading.changed.clear()
        return reading.ranking

    def _fresh(self, pool_id: int, now: dt.datetime) -> _Reading | None:
        reading = self._pools.get(pool_id)
        if reading is None:
            return None
        age = (now - reading.read_at).total_seconds()
        if not 0 <= age < self.ttl_s or self._monotonic() - reading.read_mono >= self.ttl_s:
            del self._pools[pool_id]
            return None
        return reading

    def keep(self, pool_id: int, rows: Sequence[HostRow], now: dt.datetime) -> None:
        """Keep a reading of the pool's host rows, taken at `now`."""
        kept = list(rows)
        index = {figures[0]: i for i, (figures, _) in enumerate(kept)}
        self._pools[pool_id] = _Reading(kept, index, now, self._monotonic())

    def took(self, pool_id: int, host_id: int) -> None:
        """A session of the pool has just been placed on the host: one more open
        session and logon there, in every pool's reading, and one more of the pool."""
        for reading_pool, reading in self._pools.items():
            i = reading.index.get(host_id)
            if i is None:
                continue
            figures, pool_sessions = reading.rows[i]
            # A new tuple, not changed in place: HostViews compares kept rows.
            # (Written indexes: open sessions and logons are the last two.)
            more = (*figures[:8], figures[8] + 1, figures[9] + 1)
            reading.rows[i] = (more, pool_sessions + (reading_pool == pool_id))
            reading.changed.add(host_id)
