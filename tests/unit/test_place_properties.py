"""Properties of placement over random states (hypothesis): it never breaks a limit."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.domain import HostState, WorkMode
from broker.placement import filters
from broker.placement.model import Assign, DesktopView, HostView, Snapshot
from broker.placement.place import place
from broker.policy.quota import DepartmentCap
from tests.unit.placement_builders import desktop, host, policy, pool, request, snapshot, user

states = st.sampled_from(list(HostState))
power = st.sampled_from(["running", "stopped", "paused", "unknown"])


@st.composite
def worlds(draw: st.DrawFn) -> tuple[Snapshot, int | None]:
    n_hosts = draw(st.integers(1, 6))
    hosts = [
        host(
            i,
            cpu=draw(st.floats(0, 1)),
            sessions=draw(st.integers(0, 12)),
            capacity=draw(st.integers(0, 12)),
            logons=draw(st.integers(0, 3)),
            state=draw(states),
            up=draw(st.booleans()),
            team_sessions={"Stab": draw(st.integers(0, 2))},
        )
        for i in range(1, n_hosts + 1)
    ]
    desktops = [
        desktop(
            i,
            draw(st.integers(1, n_hosts)),
            power_state=draw(power),
            probe_ok=draw(st.sampled_from([True, False, None])),
            busy=draw(st.booleans()),
            missing=draw(st.integers(0, 9)) == 0,
            needs_reset=draw(st.integers(0, 9)) == 0,
            starting=draw(st.integers(0, 9)) == 0,
        )
        for i in range(1, draw(st.integers(0, 30)) + 1)
    ]
    max_sessions = draw(st.integers(0, 30))
    open_sessions = draw(st.integers(0, 35))
    snap = snapshot(
        pool(
            max_sessions=max_sessions,
            open_sessions=open_sessions,
            priority_reserve=draw(st.sampled_from([0.0, 0.1, 0.5])),
        ),
        hosts,
        desktops,
        department_remote_staff=draw(st.integers(0, 6)),
        requester_at_home=draw(st.booleans()),
        department_staff=10,
    )
    cap = draw(st.one_of(st.none(), st.integers(0, 5)))
    return snap, cap


def desktop_by_id(snap: Snapshot, desktop_id: int) -> DesktopView:
    return next(d for ds in snap.desktops_by_host.values() for d in ds if d.id == desktop_id)


@settings(max_examples=400, deadline=None)
@given(worlds(), st.booleans(), st.sampled_from([None, "Krisenstab"]))
def test_never_over_a_limit_never_a_bad_host_never_a_busy_desktop(
    world: tuple[Snapshot, int | None], member: bool, priority_class: str | None
) -> None:
    snap, cap = world
    who = user(team="Stab" if member else None, priority_class=priority_class)
    rules = policy(
        department_cap=DepartmentCap("Finanzen", cap) if cap is not None else None,
        priority_classes=frozenset({"Krisenstab"}),
    )
    decision = place(request(who), snap, rules)
    if not isinstance(decision, Assign):
        return
    # Never over the licence or the department cap.
    assert snap.pool.open_sessions < snap.pool.max_sessions
    # (Someone at home already adds nobody to those at home.)
    if cap is not None:
        assert snap.requester_at_home or snap.department_remote_staff < cap
    # Never a down, draining or maintenance host.
    chosen: HostView = snap.hosts[decision.host_id]
    assert chosen.up and chosen.state is HostState.ACTIVE
    # Never a busy, missing or unclean desktop.
    d = desktop_by_id(snap, decision.desktop_id)
    assert d.host_id == decision.host_id
    assert not d.busy and not d.missing and not d.needs_reset
    assert d.power_state == ("stopped" if decision.start else "running")
    if decision.start:
        assert filters.host_has_headroom(chosen, rules)
    # The reserve holds for staff without priority.
    if priority_class is None and snap.pool.priority_reserve > 0:
        capacity = filters.usable_capacity(snap)
        assert snap.pool.open_sessions < int((1 - snap.pool.priority_reserve) * capacity + 1e-9)


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_team_members_are_never_put_together_while_another_host_has_room(
    world: tuple[Snapshot, int | None],
) -> None:
    snap, _ = world
    member = user(team="Stab")
    decision = place(request(member), snap, policy())
    if not isinstance(decision, Assign) or decision.start:
        return
    chosen = snap.hosts[decision.host_id]
    if chosen.team_sessions.get("Stab", 0) == 0:
        return
    # The chosen host has a team member: then no accepting host without one may
    # have a ready desktop.
    for h in snap.hosts.values():
        if h.team_sessions.get("Stab", 0) == 0 and filters.host_accepting(h):
            ready = [d for d in snap.desktops_by_host.get(h.id, ()) if filters.desktop_ready(d)]
            assert not ready, f"host {h.name} had room without a team member"


@settings(max_examples=200, deadline=None)
@given(worlds())
def test_placement_is_deterministic(world: tuple[Snapshot, int | None]) -> None:
    snap, _ = world
    assert place(request(), snap, policy()) == place(request(), snap, policy())


def test_field_work_never_counts_against_the_cap() -> None:
    snap = snapshot(
        pool(), [host(1)], [desktop(1, 1)], department_remote_staff=99, department_staff=100
    )
    rules = policy(department_cap=DepartmentCap("Finanzen", 1))
    assert isinstance(place(request(user(work_mode=WorkMode.FIELD)), snap, rules), Assign)
