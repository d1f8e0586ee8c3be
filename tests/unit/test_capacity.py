"""Pool capacity arithmetic: what a pool can hold now, and if a host fails."""

from __future__ import annotations

from broker import capacity


def test_stopped_desktops_count_only_as_far_as_the_host_can_start_them() -> None:
    # 2 running, 6 stopped, on a host that runs at most 4 sessions: 2 can start.
    assert capacity.countable_desktops(2, 6, 4, 0) == 4
    # Another pool's sessions there take their share of the ceiling.
    assert capacity.countable_desktops(2, 6, 4, 1) == 3
    # A host already at its ceiling starts nothing; its running desktops still count.
    assert capacity.countable_desktops(2, 6, 4, 5) == 2
    # Below the ceiling every stopped desktop counts.
    assert capacity.countable_desktops(2, 6, 20, 3) == 8


def test_usable_capacity_is_bounded_by_licences_and_accepting_hosts() -> None:
    per_host = {1: 6, 2: 4, 3: 5}
    assert capacity.usable(100, per_host, accepting={1, 2}) == 10
    assert capacity.usable(8, per_host, accepting={1, 2}) == 8
    # Sessions going on on a drained host hold desktops of their own.
    assert capacity.usable(100, per_host, accepting={1, 2}, held={3: 2}) == 12


def test_without_the_largest_host_a_drained_host_counts_with_what_it_holds() -> None:
    per_host = {1: 4, 2: 4, 3: 6}
    assert capacity.without_largest_host(100, per_host, accepting={1, 2, 3}) == 8
    # Host 3 drained with 6 sessions still on it: it is still the largest that can fail.
    assert capacity.without_largest_host(100, per_host, accepting={1, 2}, held={3: 6}) == 8
    assert capacity.without_largest_host(100, {}, accepting=set()) == 0
