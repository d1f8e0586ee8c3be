"""What placement decides on: plain, immutable views of the broker's state."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from broker.config import LoadIndexSettings
from broker.domain import HostState, PoolType, RefusalCode, WorkMode
from broker.policy.quota import DepartmentCap
from broker.policy.schedule import Window


@dataclass(frozen=True)
class UserView:
    id: int
    name: str
    department: str
    work_mode: WorkMode
    priority_class: str | None = None
    team: str | None = None


@dataclass(frozen=True)
class PoolView:
    id: int
    name: str
    type: PoolType
    max_sessions: int
    field: bool = False
    departments: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    priority_reserve: float = 0.0
    open_sessions: int = 0  # licences in use


class PoolDesktops(NamedTuple):
    """A pool's desktops on one host (missing ones not counted)."""

    total: int
    stopped: int


@dataclass(frozen=True)
class HostView:
    id: int
    name: str
    state: HostState
    up: bool
    load_index: float  # 0..1, see broker.placement.load_index
    sessions: int  # open sessions on this host, all pools
    capacity: int
    team_sessions: Mapping[str, int] = field(default_factory=dict)
    # The requested pool's desktops here that can hold a session: missing ones
    # and ones out of service (broker.sessions.snapshot.OUT_OF_SERVICE) not counted.
    pool_desktops: int = 0
    pool_stopped: int = 0  # of those, the ones powered off
    pool_sessions: int = 0  # the requested pool's open sessions here

    @property
    def accepting(self) -> bool:
        return self.up and self.state is HostState.ACTIVE


@dataclass(frozen=True)
class DesktopView:
    id: int
    name: str
    host_id: int
    power_state: str
    probe_ok: bool | None = True
    missing: bool = False
    busy: bool = False  # an open session holds it
    owner_id: int | None = None  # persistent pools
    needs_reset: bool = False
    starting: bool = False  # a start action is on its way
    # The agent reports an address and port for its console. A guest without a
    # console (or one whose port appears only once it runs) has none.
    has_endpoint: bool = True


@dataclass(frozen=True)
class Snapshot:
    """The state one request is placed against. Desktops come grouped by host and
    sorted by name, as the store reads them, so placement never scans them all."""

    pool: PoolView
    hosts: Mapping[int, HostView]
    desktops_by_host: Mapping[int, Sequence[DesktopView]]  # this pool's desktops
    own_desktop: DesktopView | None = None  # persistent pools: the requester's
    # Others of the user's department with an open home session (the
    # requester not counted), whether the requester has one, and the staff a
    # share cap is a share of (broker.store.tables.CAP_STAFF).
    department_remote_staff: int = 0
    requester_at_home: bool = False
    department_staff: int = 0
    # False when desktops were read only for the best-ranked hosts (see
    # broker.sessions.snapshot); a decision that needs more asks for all.
    complete: bool = True
    # The hosts to look at, best first (place.rank_hosts), when the builder has
    # ranked them already: ranking every host is most of the work a decision
    # takes, so it is done once. An incomplete snapshot lists only the hosts
    # whose desktops it holds.
    ranking: Sequence[tuple[HostView, float]] | None = None


def group_by_host(desktops: Iterable[DesktopView]) -> dict[int, list[DesktopView]]:
    """Desktops grouped by host, each group sorted by name (for tests and tools)."""
    out: dict[int, list[DesktopView]] = {}
    for d in desktops:
        out.setdefault(d.host_id, []).append(d)
    for group in out.values():
        group.sort(key=lambda d: d.name)
    return out


@dataclass(frozen=True)
class Policy:
    load: LoadIndexSettings
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Berlin"))
    department_cap: DepartmentCap | None = None
    windows: Sequence[Window] | None = None
    priority_classes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Request:
    user: UserView
    work_mode: WorkMode
    now: dt.datetime


@dataclass(frozen=True)
class Assign:
    desktop_id: int
    host_id: int
    start: bool  # the desktop is off: start it, the session is pending
    claim: bool  # persistent pool: the desktop becomes the user's own
    score: float


@dataclass(frozen=True)
class Refuse:
    code: RefusalCode
    params: dict[str, Any] = field(default_factory=dict)
    reason: str = ""  # finer cause for logs and metrics, e.g. "priority_reserve"


Decision = Assign | Refuse
