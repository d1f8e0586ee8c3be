"""The host board keeps a pool's host rows for a moment and adds this process's
assignments to them at once (broker.sessions.host_board)."""

from __future__ import annotations

import datetime as dt

from broker.sessions.host_board import HostBoard, HostRow

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
