"""The host board keeps a pool's host rows for a moment and adds this process's
assignments to them at once (broker.sessions.host_board)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from broker.config import LoadIndexSettings
from broker.placement.model import HostView, PoolDesktops
from broker.placement.ranking import HostRanking
from broker.sessions.host_board import HostBoard, HostRow
from broker.sessions.host_views import HostViews

T0 = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)


class Monotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def host(host_id: int, *, sessions: int = 0, logons: int = 0, pool_sessions: int = 0) -> HostRow:
    figures = (host_id, f"h{host_id}", "active", True, 0.2, 64, 48, 10, sessions, logons)
    return figures, pool_sessions


def test_a_reading_is_used_for_its_time_to_live_by_both_clocks() -> None:
    mono = Monotonic()
    board = HostBoard(2.0, monotonic=mono)
    assert board.rows(1, T0) is None
    board.keep(1, [host(1), host(2)], T0)
    assert board.rows(1, T0 + dt.timedelta(seconds=1.9)) == [host(1), host(2)]
    assert board.rows(2, T0) is None  # another pool

    mono.now += 2.0
    assert board.rows(1, T0) is None

    board.keep(1, [host(1)], T0)
    # The broker's clock jumped (tests move it), forwards or backwards.
    assert board.rows(1, T0 + dt.timedelta(seconds=2)) is None
    board.keep(1, [host(1)], T0)
    assert board.rows(1, T0 - dt.timedelta(seconds=1)) is None


def test_an_assignment_counts_at_once_on_its_host_in_every_pools_reading() -> None:
    board = HostBoard(2.0, monotonic=Monotonic())
    board.keep(1, [host(1), host(2, sessions=3, logons=1, pool_sessions=2)], T0)
    board.keep(2, [host(2, sessions=3, logons=1, pool_sessions=1)], T0)
    before = board.rows(1, T0)
    assert before is not None
    kept = before[1]

    board.took(1, 2)

    assert board.rows(1, T0) == [host(1), host(2, sessions=4, logons=2, pool_sessions=3)]
    # Another pool's reading: the host's sessions and logons, not the pool's.
    assert board.rows(2, T0) == [host(2, sessions=4, logons=2, pool_sessions=1)]
    # The row is replaced, not changed: kept views compare against the old one.
    assert kept == host(2, sessions=3, logons=1, pool_sessions=2)


def test_an_assignment_on_a_host_the_board_does_not_know_changes_nothing() -> None:
    board = HostBoard(2.0, monotonic=Monotonic())
    board.keep(1, [host(1)], T0)
    board.took(1, 9)
    assert board.rows(1, T0) == [host(1)]


def viewer(per_host: dict[int, PoolDesktops]) -> tuple[list[int], Callable[[HostRow], HostView]]:
    """A view builder as the snapshot's, and the ids of the hosts it was asked for."""
    views, asked = HostViews(LoadIndexSettings()), []

    def view(row: HostRow) -> HostView:
        asked.append(row[0][0])
        return views.view(row[0], 1, per_host.get(row[0][0], PoolDesktops(0, 0)), row[1], None, 0)

    return asked, view


def test_the_ranking_is_kept_with_the_reading_and_an_assignment_moves_its_host_only() -> None:
    board = HostBoard(2.0, monotonic=Monotonic())
    per_host = {1: PoolDesktops(5, 0), 2: PoolDesktops(5, 0), 3: PoolDesktops(5, 0)}
    asked, view = viewer(per_host)
    assert board.ranking(1, T0, per_host, view) is None  # no reading yet
    board.keep(1, [host(1, sessions=2), host(2, sessions=4), host(3, sessions=6)], T0)

    ranking = board.ranking(1, T0, per_host, view)
    assert ranking is not None
    assert [h.id for h, _ in ranking.ranked] == [1, 2, 3]
    assert board.ranking(1, T0, per_host, view) is ranking
    assert sorted(asked) == [1, 2, 3]

    for _ in range(3):
        board.took(1, 1)
    asked.clear()
    moved = board.ranking(1, T0, per_host, view)
    assert moved is not None
    assert asked == [1]
    # Host 1 now has five sessions and three logons, over the logon tolerance: last.
    rows = board.rows(1, T0)
    assert rows is not None
    afresh = HostRanking.of(view(row) for row in rows)
    assert [h.id for h, _ in moved.ranked] == [h.id for h, _ in afresh.ranked] == [2, 3, 1]
    assert moved.hosts[1].pool_sessions == 3


def test_the_ranking_is_built_again_for_other_desktops_and_not_kept_past_the_reading() -> None:
    mono = Monotonic()
    board = HostBoard(2.0, monotonic=mono)
    board.keep(1, [host(1), host(2)], T0)
    per_host = {1: PoolDesktops(5, 0), 2: PoolDesktops(5, 0)}
    first_ranking = board.ranking(1, T0, per_host, viewer(per_host)[1])
    assert first_ranking is not None

    fewer = {1: PoolDesktops(1, 0), 2: PoolDesktops(5, 0)}
    again = board.ranking(1, T0, fewer, viewer(fewer)[1])
    assert again is not None and again is not first_ranking
    assert again.hosts[1].pool_desktops == 1

    mono.now += 2.0
    assert board.ranking(1, T0, fewer, viewer(fewer)[1]) is None
