"""place(): scenarios for every rule and refusal, and the messages people read."""

from __future__ import annotations

import datetime as dt

import pytest

from broker.domain import HostState, PoolType, RefusalCode, WorkMode
from broker.placement import filters
from broker.placement.model import Assign, Refuse
from broker.placement.place import place
from broker.placement.refusals import message
from broker.policy.quota import DepartmentCap
from broker.policy.schedule import Window, parse_days, parse_time
from tests.unit.placement_builders import (
    MONDAY_10,
    desktop,
    host,
    policy,
    pool,
    request,
    snapshot,
    user,
)


def assigned(decision: object) -> Assign:
    assert isinstance(decision, Assign), decision
    return decision


def refused(decision: object) -> Refuse:
    assert isinstance(decision, Refuse), decision
    return decision


def test_free_running_desktop_on_the_least_loaded_host() -> None:
    snap = snapshot(
        pool(),
        [host(1, cpu=0.9), host(2, cpu=0.3), host(3, cpu=0.6)],
        [desktop(1, 1), desktop(2, 2), desktop(3, 3)],
    )
    d = assigned(place(request(), snap, policy()))
    assert (d.host_id, d.desktop_id, d.start) == (2, 2, False)


def test_ties_break_by_host_then_desktop_name() -> None:
    snap = snapshot(
        pool(),
        [host(2, name="b"), host(1, name="a")],
        [desktop(7, 2), desktop(9, 1, name="z"), desktop(8, 1, name="m")],
    )
    assert assigned(place(request(), snap, policy())).desktop_id == 8


def test_busy_dirty_missing_unanswering_and_consoleless_desktops_are_skipped() -> None:
    snap = snapshot(
        pool(),
        [host(1)],
        [
            desktop(1, 1, busy=True),
            desktop(2, 1, needs_reset=True),
            desktop(3, 1, missing=True),
            desktop(4, 1, probe_ok=False),
            desktop(5, 1, power_state="paused"),
            desktop(6, 1, has_endpoint=False, probe_ok=None),  # no console: never probed
            desktop(7, 1),
        ],
    )
    assert assigned(place(request(), snap, policy())).desktop_id == 7


def test_down_draining_and_maintenance_hosts_get_nothing() -> None:
    snap = snapshot(
        pool(),
        [
            host(1, up=False),
            host(2, state=HostState.DRAINING),
            host(3, state=HostState.MAINTENANCE),
            host(4, cpu=0.95),
        ],
        [desktop(1, 1), desktop(2, 2), desktop(3, 3), desktop(4, 4)],
    )
    assert assigned(place(request(), snap, policy())).host_id == 4


def test_stopped_desktop_is_started_on_a_host_with_headroom() -> None:
    snap = snapshot(
        pool(),
        [host(1, sessions=10, capacity=10), host(2, sessions=3)],
        [
            desktop(1, 1, power_state="stopped"),
            desktop(2, 2, power_state="stopped"),
            desktop(3, 2, power_state="stopped", starting=True),
        ],
    )
    d = assigned(place(request(), snap, policy()))
    assert (d.desktop_id, d.start) == (2, True)


def test_running_desktops_come_before_starting_one() -> None:
    snap = snapshot(
        pool(),
        [host(1, cpu=0.1), host(2, cpu=0.8)],
        [desktop(1, 1, power_state="stopped"), desktop(2, 2)],
    )
    assert assigned(place(request(), snap, policy())).desktop_id == 2


def test_capacity_full_and_host_unavailable() -> None:
    full = snapshot(pool(), [host(1)], [desktop(1, 1, busy=True)])
    assert refused(place(request(), full, policy())).code is RefusalCode.CAPACITY_FULL
    down = snapshot(
        pool(),
        [host(1, up=False), host(2, state=HostState.DRAINING)],
        [desktop(1, 1), desktop(2, 2)],
    )
    assert refused(place(request(), down, policy())).code is RefusalCode.HOST_UNAVAILABLE


def test_licence_limit_with_a_readable_message() -> None:
    snap = snapshot(pool(max_sessions=40, open_sessions=40), [host(1)], [desktop(1, 1)])
    r = refused(place(request(), snap, policy()))
    assert r.code is RefusalCode.LICENCE_LIMIT
    assert message(r, "de") == "Alle 40 Lizenzen des Pools Finanzen sind belegt."
    assert message(r, "en") == "All 40 licences of pool Finanzen are in use."


@pytest.mark.parametrize(
    ("refusal", "german", "english"),
    [
        (
            Refuse(RefusalCode.LICENCE_LIMIT, {"pool": "P", "max_sessions": 1}),
            "Die einzige Lizenz des Pools P ist belegt.",
            "The only licence of pool P is in use.",
        ),
        (
            Refuse(RefusalCode.LICENCE_LIMIT, {"pool": "P", "max_sessions": 0}),
            "Der Pool P hat derzeit keine Lizenzen.",
            "Pool P has no licences at present.",
        ),
        (
            Refuse(RefusalCode.DEPARTMENT_QUOTA, {"department": "Bauamt", "limit": 1}),
            "Aus der Abteilung Bauamt arbeitet bereits 1 Person von zu Hause; mehr sind "
            "gleichzeitig nicht vorgesehen, damit das Amt besetzt bleibt.",
            "1 person of Bauamt already works from home, the most allowed at once so that "
            "the office stays staffed.",
        ),
        (
            Refuse(RefusalCode.DEPARTMENT_QUOTA, {"department": "Bauamt", "limit": 3}),
            "Aus der Abteilung Bauamt arbeiten bereits 3 Personen von zu Hause; mehr sind "
            "gleichzeitig nicht vorgesehen, damit das Amt besetzt bleibt.",
            "3 people of Bauamt already work from home, the most allowed at once so that "
            "the office stays staffed.",
        ),
        (
            Refuse(RefusalCode.DEPARTMENT_QUOTA, {"department": "Bauamt", "limit": 0}),
            "Für die Abteilung Bauamt ist derzeit keine Telearbeit vorgesehen, damit das Amt "
            "besetzt bleibt.",
            "No one of Bauamt may work from home at present, so that the office stays staffed.",
        ),
    ],
)
def test_refusals_count_in_words(refusal: Refuse, german: str, english: str) -> None:
    """No "all 1 licences" or "1 Personen"."""
    assert message(refusal, "de") == german
    assert message(refusal, "en") == english


def test_entitlement_by_department_or_name() -> None:
    p = pool(departments=frozenset({"Bauamt"}), users=frozenset({"kurt"}))
    snap = snapshot(p, [host(1)], [desktop(1, 1)])
    r = refused(place(request(user(department="Finanzen")), snap, policy()))
    assert r.code is RefusalCode.NOT_ENTITLED
    assert "nicht freigeschaltet" in message(r, "de")
    assert assigned(place(request(user(department="Bauamt")), snap, policy()))
    assert assigned(place(request(user(name="kurt")), snap, policy()))


def test_field_pools_are_for_field_work_only() -> None:
    snap = snapshot(pool(field=True), [host(1)], [desktop(1, 1)])
    home = refused(place(request(user(work_mode=WorkMode.HOME)), snap, policy()))
    assert (home.code, home.reason) == (RefusalCode.NOT_ENTITLED, "field_pool")
    field_worker = user(work_mode=WorkMode.FIELD)
    assert assigned(place(request(field_worker), snap, policy()))
    # A home worker cannot claim field mode to get around the department cap.
    claimed = refused(place(request(user(), WorkMode.FIELD), snap, policy()))
    assert claimed.reason == "field_mode"


def test_department_cap_counts_home_work_only() -> None:
    cap = DepartmentCap("Finanzen", max_sessions=3)
    snap = snapshot(
        pool(), [host(1)], [desktop(1, 1)], department_remote_staff=3, department_staff=20
    )
    r = refused(place(request(), snap, policy(department_cap=cap)))
    assert r.code is RefusalCode.DEPARTMENT_QUOTA
    assert "Finanzen" in message(r, "de") and "3" in message(r, "en")
    field_worker = user(work_mode=WorkMode.FIELD)
    assert assigned(place(request(field_worker), snap, policy(department_cap=cap)))
    share = DepartmentCap("Finanzen", share=0.25)
    snap2 = snapshot(
        pool(), [host(1)], [desktop(1, 1)], department_remote_staff=5, department_staff=20
    )
    assert refused(place(request(), snap2, policy(department_cap=share))).code is (
        RefusalCode.DEPARTMENT_QUOTA
    )


def test_department_cap_counts_people_not_sessions() -> None:
    """Someone working from home in another pool is one of those at home
    already: a second session adds nobody, even when the cap is reached."""
    rules = policy(department_cap=DepartmentCap("Finanzen", max_sessions=2))
    # Two others at home: the cap is reached for anybody else.
    full = snapshot(pool(), [host(1)], [desktop(1, 1)], department_remote_staff=2)
    assert refused(place(request(), full, rules)).code is RefusalCode.DEPARTMENT_QUOTA
    # One other, and the requester in another pool: two people, the cap.
    mine = snapshot(
        pool(),
        [host(1)],
        [desktop(1, 1)],
        department_remote_staff=1,
        requester_at_home=True,
    )
    assert assigned(place(request(), mine, rules))
    # A cap lowered below those at home lets nobody new in, but still gives
    # someone at home their second session.
    lowered = policy(department_cap=DepartmentCap("Finanzen", max_sessions=0))
    assert assigned(place(request(), mine, lowered))


def test_outside_schedule_names_the_allowed_windows() -> None:
    windows = [Window(parse_days("mon,wed"), parse_time("07:00"), parse_time("18:00"))]
    snap = snapshot(pool(), [host(1)], [desktop(1, 1)])
    tuesday = MONDAY_10 + dt.timedelta(days=1)
    r = refused(place(request(now=tuesday), snap, policy(windows=windows)))
    assert r.code is RefusalCode.OUTSIDE_SCHEDULE
    # The day names of the portal's policies page, not the stored codes ("mon,wed").
    assert message(r, "de").endswith("Erlaubt: Mo, Mi 07:00-18:00.")
    assert message(r, "en").endswith("Allowed: Mon, Wed 07:00-18:00.")
    assert assigned(place(request(), snap, policy(windows=windows)))
    field_worker = user(work_mode=WorkMode.FIELD)
    assert assigned(place(request(field_worker, now=tuesday), snap, policy(windows=windows)))


def test_priority_reserve_keeps_the_last_places_for_priority_staff() -> None:
    p = pool(max_sessions=10, priority_reserve=0.2, open_sessions=8)
    desktops = [desktop(i, 1, busy=i <= 8) for i in range(1, 11)]
    snap = snapshot(p, [host(1)], desktops)
    rules = policy(priority_classes=frozenset({"Krisenstab"}))
    r = refused(place(request(), snap, rules))
    assert (r.code, r.reason) == (RefusalCode.CAPACITY_FULL, "priority_reserve")
    assert "reserviert" in message(r, "de")
    crisis = user(priority_class="Krisenstab")
    assert assigned(place(request(crisis), snap, rules))
    # An unknown class is not a priority class.
    other = user(priority_class="Kantine")
    assert refused(place(request(other), snap, rules)).reason == "priority_reserve"


def test_the_reserve_counts_stopped_desktops_only_as_far_as_their_host_can_start_them() -> None:
    """The host runs at most 4 sessions (the agent's --capacity): 2 are in use,
    so of its 6 stopped desktops only 2 can still start, and the pool holds 4,
    not 8. Counting all 8 let staff without priority take the last 2 places a
    50 % reserve keeps for the crisis team."""
    p = pool(max_sessions=10, priority_reserve=0.5, open_sessions=2)
    desktops = [desktop(i, 1, busy=True) for i in (1, 2)]
    desktops += [desktop(i, 1, power_state="stopped") for i in range(3, 9)]
    snap = snapshot(p, [host(1, sessions=2, capacity=4, pool_sessions=2)], desktops)
    assert filters.usable_capacity(snap) == 4
    rules = policy(priority_classes=frozenset({"Krisenstab"}))
    assert refused(place(request(), snap, rules)).reason == "priority_reserve"
    crisis = assigned(place(request(user(priority_class="Krisenstab")), snap, rules))
    assert crisis.start


def test_sessions_on_a_draining_host_do_not_eat_the_reserve_of_the_others() -> None:
    """Host 1 is drained with 6 sessions still on it; host 2 has 10 desktops, 2 in
    use. Counting the 8 open sessions against host 2's 10 desktops alone put the
    pool at 80 %, and a 25 % reserve refused staff with 8 desktops free. The
    sessions on the drained host hold desktops of their own."""
    p = pool(max_sessions=20, priority_reserve=0.25, open_sessions=8)
    hosts = [
        host(1, state=HostState.DRAINING, sessions=6, pool_desktops=6, pool_sessions=6),
        host(2, sessions=2, pool_desktops=10, pool_sessions=2),
    ]
    desktops = [desktop(i, 1, busy=True) for i in range(1, 7)]
    desktops += [desktop(i, 2, busy=i <= 8) for i in range(7, 17)]
    snap = snapshot(p, hosts, desktops)
    assert filters.usable_capacity(snap) == 16
    decision = assigned(place(request(), snap, policy()))
    assert decision.host_id == 2
    # A host that is down holds nothing it could give back: only up hosts count.
    hosts[0] = host(1, state=HostState.DRAINING, up=False, pool_desktops=6, pool_sessions=6)
    assert filters.usable_capacity(snapshot(p, hosts, desktops)) == 10


def test_critical_team_members_are_spread_over_hosts() -> None:
    hosts = [host(1, cpu=0.1, team_sessions={"Stab": 1}), host(2, cpu=0.7)]
    snap = snapshot(pool(), hosts, [desktop(1, 1), desktop(2, 2)])
    member = user(team="Stab")
    assert assigned(place(request(member), snap, policy())).host_id == 2
    # Others still go to the least loaded host.
    assert assigned(place(request(), snap, policy())).host_id == 1


def test_persistent_pool_gives_the_users_own_desktop_back() -> None:
    p = pool(type=PoolType.PERSISTENT)
    own = desktop(5, 2, owner_id=1, power_state="stopped")
    snap = snapshot(
        p, [host(1), host(2, cpu=0.9)], [desktop(4, 1, owner_id=None), own], own_desktop=own
    )
    d = assigned(place(request(user(id=1)), snap, policy()))
    assert (d.desktop_id, d.start, d.claim) == (5, True, False)


def test_persistent_pool_claims_a_free_unowned_desktop_for_a_new_user() -> None:
    p = pool(type=PoolType.PERSISTENT)
    snap = snapshot(p, [host(1)], [desktop(1, 1, owner_id=7), desktop(2, 1, owner_id=None)])
    d = assigned(place(request(user(id=1)), snap, policy()))
    assert (d.desktop_id, d.claim) == (2, True)


def test_own_desktop_on_a_down_host_is_host_unavailable_not_another_desktop() -> None:
    p = pool(type=PoolType.PERSISTENT)
    own = desktop(5, 2, owner_id=1)
    snap = snapshot(p, [host(1), host(2, up=False)], [desktop(4, 1), own], own_desktop=own)
    assert refused(place(request(user(id=1)), snap, policy())).code is (
        RefusalCode.HOST_UNAVAILABLE
    )


def test_every_refusal_has_a_message_in_both_languages() -> None:
    from broker.placement.refusals import MESSAGES

    for (code, reason), texts in MESSAGES.items():
        r = Refuse(
            RefusalCode(code),
            {
                "pool": "P",
                "max_sessions": 1,
                "department": "D",
                "limit": 1,
                "windows_de": "Mo",
                "windows_en": "mon",
            },
            reason,
        )
        assert message(r, "de") and message(r, "en")
        assert set(texts) == {"de", "en"}
