"""Placement's view of each host, built once per distinct state and reused.

Every session request reads every host (its figures and session counts) and
needs a HostView with a load index for each. Between two requests nearly every
host reads back exactly as before: only the host that took the last session,
or one whose agent reported, has changed. Building 500 views and load indexes
was most of the Python a request spent, so views are kept by the values they
are built from. A view depends on nothing but its key, so a kept one is always
the one that would be built: the cache saves work and never changes a decision.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from types import MappingProxyType

from broker.config import LoadIndexSettings
from broker.domain import HostState
from broker.placement.load_index import combine, parts
from broker.placement.model import HostView, PoolDesktops

# A host as placement reads it (broker.sessions.snapshot._HOSTS): id, name,
# state, up, cpu ratio, memory total, memory available, capacity, open sessions
# (all pools) and logons.
HostFigures = tuple[int, str, str, bool, float | None, int | None, int | None, int, int, int]

_STATES = {s.value: s for s in HostState}
# Shared by every view of a requester without a team, so read-only.
_NO_TEAM: Mapping[str, int] = MappingProxyType({})


class HostViews:
    """The latest view of each host for each pool and critical team asking (a
    view holds the pool's desktops and the team's sessions on the host), under
    one load-index configuration. So it holds at most one view per host, pool
    and team; the bound is only there for hosts and pools that come and go."""

    def __init__(self, cfg: LoadIndexSettings, max_entries: int = 20_000) -> None:
        self.cfg = cfg
        self.max_entries = max_entries
        self._views: dict[tuple[int, int, str | None], tuple[Hashable, HostView]] = {}

    def view(
        self,
        row: HostFigures,
        pool_id: int,
        pool_desktops: PoolDesktops,
        pool_sessions: int,
        team: str | None,
        team_sessions: int,
    ) -> HostView:
        """The view of a host from its row (id, name, state, up, cpu ratio,
        memory total, memory available, capacity, open sessions, logons), the
        requested pool's desktops and sessions on it and the asking team's
        sessions there."""
        host_id = row[0]
        figures = (row, pool_desktops, pool_sessions, team_sessions)
        slot = (host_id, pool_id, team)
        kept = self._views.get(slot)
        if kept is not None and kept[0] == figures:
            return kept[1]
        _, name, state, up, cpu, mem_total, mem_available, capacity, sessions, logons = row
        cfg = self.cfg
        built = HostView(
            id=host_id,
            name=name,
            state=_STATES[state],
            up=bool(up),
            load_index=combine(
                parts(cpu, mem_total, mem_available, sessions, capacity, logons, cfg), cfg
            ),
            sessions=sessions,
            capacity=capacity,
            team_sessions={team: team_sessions} if team else _NO_TEAM,
            pool_desktops=pool_desktops.total,
            pool_stopped=pool_desktops.stopped,
            pool_sessions=pool_sessions,
        )
        if kept is None and len(self._views) >= self.max_entries:
            self._views.clear()
        self._views[slot] = (figures, built)
        return built

    def __len__(self) -> int:
        return len(self._views)
