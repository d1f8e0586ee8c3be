"""Spare desktops: keep N free desktops of a pool powered on, stop the surplus.

Logon is fastest on a desktop that already runs; but every running desktop
costs memory on its host. So a pool may ask for `spare_desktops` free running
desktops: missing ones are started on the least loaded hosts with headroom,
surplus ones are stopped once they have idled for a while, most loaded host
first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SpareCandidate:
    desktop_id: int
    name: str
    host_id: int
    host_score: float  # load index of the host; lower is better
    idle_since: dt.datetime | None = None


@dataclass(frozen=True)
class SparePlan:
    start: list[SpareCandidate]
    stop: list[SpareCandidate]


def plan_spares(
    spare: int,
    ready: Sequence[SpareCandidate],
    startable: Sequence[SpareCandidate],
    starting: int,
    now: dt.datetime,
    idle_stop_s: float,
) -> SparePlan:
    """What to start and stop so that `spare` free desktops are `ready` to hand
    out (counting those already starting), stopping only desktops idle for
    `idle_stop_s`. A free desktop that is running but not ready (its console
    does not answer, its host is drained) is no spare, and not this plan's to stop."""
    missing = spare - len(ready) - starting
    if missing > 0:
        ranked = sorted(startable, key=lambda c: (c.host_score, c.name))
        return SparePlan(start=ranked[:missing], stop=[])
    surplus = len(ready) - spare
    if surplus <= 0:
        return SparePlan([], [])
    idle_before = now - dt.timedelta(seconds=idle_stop_s)
    stoppable = [c for c in ready if c.idle_since is not None and c.idle_since <= idle_before]
    ranked = sorted(stoppable, key=lambda c: (-c.host_score, c.name))
    return SparePlan(start=[], stop=ranked[:surplus])
