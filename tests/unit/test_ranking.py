"""A kept host ranking, moved one host at a time, ranks as place.rank_hosts()
does for a requester without a critical team (broker.placement.ranking)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.domain import HostState
from broker.placement.model import HostView
from broker.placement.place import rank_hosts
from broker.placement.ranking import HostRanking, first
from tests.unit.placement_builders import host, policy, request

# Coarse figures, so that many hosts tie on the load index and the name decides.
host_figures = st.fixed_dictionaries(
    {
        "cpu": st.sampled_from([0.1, 0.5, 0.9]),
        "sessions": st.integers(0, 4),
        "state": st.sampled_from(list(HostState)),
        "up": st.booleans(),
    }
)


def ranked_afresh(hosts: list[HostView]) -> list[tuple[int, float]]:
    return [(h.id, score) for h, score in rank_hosts(request(), hosts, policy())]


def ids(ranking: HostRanking) -> list[tuple[int, float]]:
    return [(h.id, score) for h, score in ranking.ranked]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(host_figures, min_size=0, max_size=12),
    st.lists(st.tuples(st.integers(1, 14), host_figures), max_size=20),
)
def test_moving_hosts_one_at_a_time_ranks_as_ranking_them_all_afresh(
    start: list[dict[str, object]], changes: list[tuple[int, dict[str, object]]]
) -> None:
    hosts = {i: host(i, **f) for i, f in enumerate(start, 1)}  # type: ignore[arg-type]
    ranking = HostRanking.of(hosts.values())
    assert ids(ranking) == ranked_afresh(list(hosts.values()))
    for host_id, figures in changes:
        # A changed host, or (an id not there yet) a new one.
        hosts[host_id] = host(host_id, **figures)  # type: ignore[arg-type]
        ranking = ranking.with_hosts([hosts[host_id]])
        assert ids(ranking) == ranked_afresh(list(hosts.values()))
        assert dict(ranking.hosts) == hosts


def test_a_ranking_is_not_changed_by_moving_a_host_in_a_new_one() -> None:
    before = HostRanking.of([host(1, cpu=0.2), host(2, cpu=0.5), host(3, cpu=0.8)])
    after = before.with_hosts([host(1, cpu=0.9)])
    assert [h.id for h, _ in after.ranked] == [2, 3, 1]
    # A request still being placed holds the old one.
    assert [h.id for h, _ in before.ranked] == [1, 2, 3]
    assert before.hosts[1].load_index < after.hosts[1].load_index


def test_a_host_that_stops_accepting_leaves_the_ranking_but_not_the_hosts() -> None:
    ranking = HostRanking.of([host(1), host(2, cpu=0.5)])
    drained = ranking.with_hosts([host(1, state=HostState.DRAINING)])
    assert [h.id for h, _ in drained.ranked] == [2]
    assert drained.hosts[1].state is HostState.DRAINING
    back = drained.with_hosts([host(1)])
    assert [h.id for h, _ in back.ranked] == [1, 2]


def test_first_takes_the_best_hosts_the_test_keeps_in_order() -> None:
    ranking = HostRanking.of([host(i, cpu=i / 10) for i in range(1, 7)])
    odd = first(ranking.ranked, 2, lambda h: h.id % 2 == 1)
    assert [h.id for h, _ in odd] == [1, 3]
    assert [h.id for h, _ in first(ranking.ranked, 10, lambda h: True)] == [1, 2, 3, 4, 5, 6]
    assert first(ranking.ranked, 3, lambda h: False) == []
