"""Reconciling reported desktops with stored ones (pure)."""

from __future__ import annotations

from agent.protocol import DesktopReport, PowerState, ProbeResult
from broker.hosts.inventory import (
    PoolMove,
    PoolResolver,
    StoredDesktop,
    inventory_digest,
    plan,
)

POOLS = {"Finanzen": 1, "Bauamt": 2}


def reported(
    name: str,
    pool: str | None = None,
    power: str = "running",
    port: int = 3389,
    ok: bool = True,
    latency: float = 0.01,
) -> DesktopReport:
    return DesktopReport(
        name=name,
        pool=pool,
        power_state=PowerState(power),
        address="10.0.0.5",
        port=port,
        probe=ProbeResult(ok=ok, latency_s=latency),
    )


def stored(
    id: int,
    name: str,
    pool_id: int | None = 1,
    power: str = "running",
    port: int = 3389,
    ok: bool | None = True,
    missing: bool = False,
    in_use: bool = False,
) -> StoredDesktop:
    return StoredDesktop(id, name, pool_id, power, "10.0.0.5", port, ok, missing, in_use)


def test_new_desktops_go_to_the_named_pool_or_by_naming_rule() -> None:
    resolver = PoolResolver(POOLS, {"^bau-": "Bauamt"})
    result = plan(
        [], [reported("fin-01", "Finanzen"), reported("bau-07"), reported("x-1")], resolver
    )
    assert [(d.name, d.pool_id) for d in result.inserts] == [
        ("fin-01", 1),
        ("bau-07", 2),
        ("x-1", None),
    ]
    assert result.updates == []


def test_unknown_pool_is_noted_and_desktop_registered_without_pool() -> None:
    result = plan([], [reported("d1", "Gibtsnicht")], PoolResolver(POOLS, {}))
    assert result.inserts[0].pool_id is None
    assert result.unknown_pools == {"Gibtsnicht"}


def test_only_changed_fields_are_updated() -> None:
    result = plan(
        [stored(1, "d1"), stored(2, "d2")],
        [reported("d1", "Finanzen"), reported("d2", "Finanzen", power="stopped", ok=False)],
        PoolResolver(POOLS, {}),
    )
    assert [(c.id, c.values) for c in result.updates] == [
        (2, {"power_state": "stopped", "probe_ok": False})
    ]


def test_vanished_desktops_are_marked_missing_never_deleted() -> None:
    result = plan(
        [stored(1, "d1"), stored(2, "gone"), stored(3, "gone-too", missing=True)],
        [reported("d1", "Finanzen")],
        PoolResolver(POOLS, {}),
    )
    assert [(c.id, c.values) for c in result.updates] == [(2, {"missing": True})]
    back = plan(
        [stored(3, "gone-too", missing=True)],
        [reported("gone-too", "Finanzen")],
        PoolResolver(POOLS, {}),
    )
    assert [(c.id, c.values) for c in back.updates] == [(3, {"missing": False})]


def test_open_session_keeps_its_pool_and_conflicts_are_reported() -> None:
    result = plan(
        [stored(1, "d1", pool_id=1, in_use=True), stored(2, "d2", in_use=True)],
        [reported("d1", "Bauamt")],
        PoolResolver(POOLS, {}),
    )
    assert [(c.id, c.values) for c in result.updates] == [(2, {"missing": True})]
    assert len(result.conflicts) == 2
    assert "stored pool is kept" in result.conflicts[0]


def test_free_desktop_moves_pool_when_the_agent_says_so() -> None:
    result = plan([stored(1, "d1", pool_id=1)], [reported("d1", "Bauamt")], PoolResolver(POOLS, {}))
    assert [(c.id, c.values) for c in result.updates] == [(1, {"pool_id": 2})]
    assert result.moves == [PoolMove(1, "d1", 1, 2, "running")]


def test_a_desktops_first_pool_and_a_kept_pool_are_no_moves() -> None:
    result = plan(
        [stored(1, "d1", pool_id=None), stored(2, "d2", pool_id=1, in_use=True)],
        [reported("d1", "Bauamt"), reported("d2", "Bauamt")],
        PoolResolver(POOLS, {}),
    )
    assert [(c.id, c.values) for c in result.updates] == [(1, {"pool_id": 2})]
    assert result.moves == []


def test_digest_ignores_latency_and_order_but_not_state() -> None:
    a = [reported("d1", latency=0.01), reported("d2")]
    b = [reported("d2"), reported("d1", latency=0.5)]
    c = [reported("d2"), reported("d1", ok=False)]
    assert inventory_digest(a, {}) == inventory_digest(b, {})
    assert inventory_digest(a, {}) != inventory_digest(c, {})


def test_digest_changes_with_the_pool_naming_rules() -> None:
    """Other rules put the same desktops in other pools: a broker started with
    them must reconcile, though the agent reports what it always did."""
    desktops = [reported("bau-07"), reported("fin-01")]
    before = inventory_digest(desktops, {"^bau-": "Bauamt"})
    assert inventory_digest(desktops, {"^bau-": "Bauamt"}) == before
    assert inventory_digest(desktops, {"^bau-": "Bauamt", "^fin-": "Finanzen"}) != before
    assert inventory_digest(desktops, {"^bau-": "Hochbau"}) != before
    # The first rule that matches wins, so their order counts too.
    two = {"^bau-": "Bauamt", "^bau-0": "Hochbau"}
    swapped = {"^bau-0": "Hochbau", "^bau-": "Bauamt"}
    assert inventory_digest(desktops, two) != inventory_digest(desktops, swapped)


def test_unchanged_connections_are_no_update() -> None:
    old = StoredDesktop(1, "d1", 1, "running", "10.0.0.5", 3389, True, False, False, 2)
    same = DesktopReport(
        name="d1",
        pool="Finanzen",
        power_state=PowerState.RUNNING,
        address="10.0.0.5",
        port=3389,
        probe=ProbeResult(ok=True),
        connections=2,
    )
    assert plan([old], [same], PoolResolver(POOLS, {})).updates == []
    more = same.model_copy(update={"connections": 3})
    changes = plan([old], [more], PoolResolver(POOLS, {})).updates
    assert [(c.id, c.values) for c in changes] == [(1, {"connections": 3})]


def test_without_a_listing_nothing_left_out_is_missing() -> None:
    """The agent could not ask its hypervisor: the desktops it reports are
    updated, those it leaves out are not taken for gone."""
    old = [stored(1, "d1", power="running"), stored(2, "d2")]
    blind = plan(old, [reported("d1", power="unknown")], PoolResolver(POOLS, {}), listed=False)
    assert [(c.id, c.values) for c in blind.updates] == [(1, {"power_state": "unknown"})]
    listed = plan(old, [reported("d1", power="unknown")], PoolResolver(POOLS, {}))
    assert (2, {"missing": True}) in [(c.id, c.values) for c in listed.updates]
    # The same desktops after a failed and after a working listing differ.
    same = [reported("d1")]
    assert inventory_digest(same, {}, listed=False) != inventory_digest(same, {})
