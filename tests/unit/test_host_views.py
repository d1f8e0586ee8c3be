"""Placement's host views are kept across requests; a kept view must always be
the one that would be built from the same row."""

from __future__ import annotations

from broker.config import LoadIndexSettings
from broker.domain import HostState
from broker.placement.load_index import HostLoad, index_of
from broker.placement.model import PoolDesktops
from broker.sessions.host_views import HostFigures, HostViews

LOAD = LoadIndexSettings()
GIB = 1 << 30
FIVE = PoolDesktops(5, 0)  # the pool's desktops on the host, none stopped


def row(
    *,
    host_id: int = 7,
    state: str = "active",
    up: bool = True,
    cpu: float | None = 0.5,
    sessions: int = 3,
    logons: int = 1,
) -> HostFigures:
    return (host_id, f"h{host_id}", state, up, cpu, 64 * GIB, 40 * GIB, 20, sessions, logons)


def test_a_view_carries_the_row_and_the_load_index_of_its_figures() -> None:
    view = HostViews(LOAD).view(
        row(),
        pool_id=1,
        pool_desktops=PoolDesktops(5, 1),
        pool_sessions=2,
        team="Stab",
        team_sessions=2,
    )
    assert (view.id, view.name, view.state, view.up) == (7, "h7", HostState.ACTIVE, True)
    assert (view.sessions, view.capacity) == (3, 20)
    assert (view.pool_desktops, view.pool_stopped, view.pool_sessions) == (5, 1, 2)
    assert view.team_sessions == {"Stab": 2}
    assert view.load_index == index_of(HostLoad(0.5, 64 * GIB, 40 * GIB, 3, 20, 1), LOAD)


def test_the_same_figures_give_the_same_view_object() -> None:
    views = HostViews(LOAD)
    first = views.view(row(), 1, FIVE, 2, None, 0)
    assert views.view(row(), 1, FIVE, 2, None, 0) is first
    assert len(views) == 1


def test_any_changed_figure_gives_a_fresh_view() -> None:
    views = HostViews(LOAD)
    before = views.view(row(), 1, FIVE, 2, None, 0)
    changed = [
        views.view(row(sessions=4), 1, FIVE, 2, None, 0),
        views.view(row(logons=2), 1, FIVE, 2, None, 0),
        views.view(row(cpu=0.9), 1, FIVE, 2, None, 0),
        views.view(row(up=False), 1, FIVE, 2, None, 0),
        views.view(row(state="draining"), 1, FIVE, 2, None, 0),
        views.view(row(), 1, PoolDesktops(6, 0), 2, None, 0),
        views.view(row(), 1, PoolDesktops(5, 1), 2, None, 0),
        views.view(row(), 1, FIVE, 2, "Stab", 1),
        views.view(row(), 1, FIVE, 3, None, 0),
    ]
    assert all(view is not before for view in changed)
    assert changed[0].sessions == 4 and changed[0].load_index > before.load_index
    assert changed[1].load_index > before.load_index
    assert not changed[3].accepting and not changed[4].accepting
    assert changed[5].pool_desktops == 6
    assert changed[6].pool_stopped == 1
    assert changed[7].team_sessions == {"Stab": 1}
    assert changed[8].pool_sessions == 3


def test_no_team_gives_no_team_counts() -> None:
    assert HostViews(LOAD).view(row(), 1, FIVE, 2, None, 0).team_sessions == {}


def test_only_the_latest_view_of_a_host_is_kept_per_team() -> None:
    views = HostViews(LOAD)
    for sessions in range(25):
        views.view(row(sessions=sessions), 1, FIVE, 2, None, 0)
        views.view(row(sessions=sessions), 1, FIVE, 2, "Stab", 1)
    assert len(views) == 2
    views.view(row(sessions=24), 2, PoolDesktops(8, 0), 2, None, 0)
    assert len(views) == 3
    # A team's view, another pool's and the plain one do not push each other out.
    plain = views.view(row(sessions=24), 1, FIVE, 2, None, 0)
    assert views.view(row(sessions=24), 1, FIVE, 2, "Stab", 1) is not plain
    assert views.view(row(sessions=24), 1, FIVE, 2, None, 0) is plain


def test_the_cache_is_bounded_when_hosts_come_and_go() -> None:
    views = HostViews(LOAD, max_entries=10)
    for host_id in range(25):
        views.view(row(host_id=host_id), 1, FIVE, 2, None, 0)
    assert 1 <= len(views) <= 10
    # What it forgot is built again, the same as before.
    assert views.view(row(host_id=0), 1, FIVE, 2, None, 0).name == "h0"
