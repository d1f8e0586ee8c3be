"""Reconciling a host's reported desktops with the stored ones (pure).

The agent is the source of truth for what exists on the hypervisor; the broker
is the source of truth for what is in use. So: new desktops are registered,
vanished ones are marked missing (never deleted while a session uses them), and
where a report would change the pool of a desktop with an open session, the
broker's record wins and the conflict is reported for the log. An idle desktop
that changes pool is a move (broker.hosts.moves): it leaves its owner and any
logon on it behind.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from agent.protocol import DesktopReport


@dataclass(frozen=True)
class StoredDesktop:
    id: int
    name: str
    pool_id: int | None
    power_state: str
    address: str | None
    port: int | None
    probe_ok: bool | None
    missing: bool
    in_use: bool  # an open session holds it
    connections: int | None = None


@dataclass(frozen=True)
class NewDesktop:
    name: str
    pool_id: int | None
    power_state: str
    address: str | None
    port: int | None
    probe_ok: bool | None
    connections: int | None = None


@dataclass(frozen=True)
class DesktopChange:
    id: int
    values: dict[str, object]


@dataclass(frozen=True)
class PoolMove:
    """An idle desktop that the report puts into another pool."""

    id: int
    name: str
    from_pool_id: int
    to_pool_id: int
    power_state: str  # as reported now


@dataclass
class InventoryPlan:
    inserts: list[NewDesktop] = field(default_factory=list)
    updates: list[DesktopChange] = field(default_factory=list)
    moves: list[PoolMove] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    unknown_pools: set[str] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return not (self.inserts or self.updates)


def inventory_digest(
    desktops: Sequence[DesktopReport], pool_rules: Mapping[str, str], listed: bool = True
) -> str:
    """A digest of what matters for storage; probe latency is left out, so it is
    stable from report to report while nothing changes.

    The pool naming rules are part of it: a broker with other rules would resolve
    the same desktops to other pools, so its first report of each host must
    reconcile. New pools are not (that would cost a look-up on every report);
    adding one clears every host's stored digest instead (broker.hosts.store).
    Whether the listing worked is too: the same desktops listed again after a
    failed listing must mark those left out as missing."""
    rows = sorted(
        (
            d.name,
            d.pool,
            d.power_state.value,
            d.address,
            d.port,
            d.probe.ok if d.probe else None,
            d.connections,
        )
        for d in desktops
    )
    document = [list(pool_rules.items()), rows, listed]
    return hashlib.sha256(json.dumps(document, separators=(",", ":")).encode()).hexdigest()


class PoolResolver:
    """Which pool a reported desktop belongs in: the pool the agent names, else the
    first naming rule (regular expression on the desktop name) that matches."""

    def __init__(self, pools_by_name: Mapping[str, int], rules: Mapping[str, str]) -> None:
        self.pools_by_name = pools_by_name
        self.rules = [(re.compile(pattern), pool) for pattern, pool in rules.items()]

    def pool_name(self, desktop: DesktopReport) -> str | None:
        if desktop.pool:
            return desktop.pool
        for pattern, pool in self.rules:
            if pattern.search(desktop.name):
                return pool
        return None


def plan(
    stored: Iterable[StoredDesktop],
    reported: Sequence[DesktopReport],
    resolver: PoolResolver,
    listed: bool = True,
) -> InventoryPlan:
    """What to insert and update so storage matches the report. Unless `listed`
    (the agent could not list its desktops), none left out is marked missing."""
    out = InventoryPlan()
    by_name = {d.name: d for d in stored}
    seen: set[str] = set()
    for d in reported:
        seen.add(d.name)
        pool_name = resolver.pool_name(d)
        pool_id = resolver.pools_by_name.get(pool_name) if pool_name else None
        if pool_name and pool_id is None:
            out.unknown_pools.add(pool_name)
        probe_ok = d.probe.ok if d.probe else None
        old = by_name.get(d.name)
        if old is None:
            out.inserts.append(
                NewDesktop(
                    d.name,
                    pool_id,
                    d.power_state.value,
                    d.address,
                    d.port,
                    probe_ok,
                    d.connections,
                )
            )
            continue
        values: dict[str, object] = {}
        for key, new in (
            ("power_state", d.power_state.value),
            ("address", d.address),
            ("port", d.port),
            ("probe_ok", probe_ok),
            ("connections", d.connections),
            ("missing", False),
        ):
            if getattr(old, key) != new:
                values[key] = new
        if pool_id is not None and pool_id != old.pool_id:
            if old.in_use:
                out.conflicts.append(
                    f"desktop {d.name} is reported in pool {pool_name} but has an open "
                    "session in its stored pool; the stored pool is kept"
                )
            else:
                values["pool_id"] = pool_id
                # A desktop without a pool was never handed out: getting its
                # first pool is no move.
                if old.pool_id is not None:
                    out.moves.append(
                        PoolMove(old.id, d.name, old.pool_id, pool_id, d.power_state.value)
                    )
        if values:
            out.updates.append(DesktopChange(old.id, values))
    for old in by_name.values() if listed else ():
        if old.name not in seen and not old.missing:
            out.updates.append(DesktopChange(old.id, {"missing": True}))
            if old.in_use:
                out.conflicts.append(
                    f"desktop {old.name} vanished from the report but has an open session; "
                    "it is kept and marked missing"
                )
    return out
