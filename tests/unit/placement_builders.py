"""Builders of placement views for tests: readable defaults, override what matters."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from broker.config import LoadIndexSettings
from broker.domain import HostState, PoolType, WorkMode
from broker.placement.load_index import HostLoad, index_of
from broker.placement.model import (
    DesktopView,
    HostView,
    Policy,
    PoolView,
    Request,
    Snapshot,
    UserView,
    group_by_host,
)

MONDAY_10 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)  # 10:00 in Berlin
LOAD = LoadIndexSettings()


def user(id: int = 1, **kw: Any) -> UserView:
    values: dict[str, Any] = {
        "name": f"user{id}",
        "department": "Finanzen",
        "work_mode": WorkMode.HOME,
    }
    values.update(kw)
    return UserView(id=id, **values)


def pool(**kw: Any) -> PoolView:
    values: dict[str, Any] = {
        "id": 1,
        "name": "Finanzen",
        "type": PoolType.FLOATING,
        "max_sessions": 40,
    }
    values.update(kw)
    return PoolView(**values)


def host(
    id: int,
    *,
    cpu: float = 0.2,
    sessions: int = 0,
    capacity: int = 10,
    logons: int = 0,
    state: HostState = HostState.ACTIVE,
    up: bool = True,
    **kw: Any,
) -> HostView:
    load = index_of(HostLoad(cpu, 64 << 30, 48 << 30, sessions, capacity, logons), LOAD)
    return HostView(
        id=id,
        name=kw.pop("name", f"h{id:02d}"),
        state=state,
        up=up,
        load_index=load,
        sessions=sessions,
        capacity=capacity,
        **kw,
    )


def desktop(id: int, host_id: int, **kw: Any) -> DesktopView:
    values: dict[str, Any] = {"name": f"d{id:04d}", "power_state": "running"}
    values.update(kw)
    return DesktopView(id=id, host_id=host_id, **values)


def snapshot(
    the_pool: PoolView, hosts: Sequence[HostView], desktops: Sequence[DesktopView], **kw: Any
) -> Snapshot:
    by_host = group_by_host(desktops)
    counted = [
        HostView(
            **{
                **h.__dict__,
                "pool_desktops": sum(1 for d in by_host.get(h.id, []) if not d.missing),
                "pool_stopped": sum(
                    1 for d in by_host.get(h.id, []) if not d.missing and d.power_state == "stopped"
                ),
            }
        )
        for h in hosts
    ]
    return Snapshot(pool=the_pool, hosts={h.id: h for h in counted}, desktops_by_host=by_host, **kw)


def request(
    the_user: UserView | None = None,
    work_mode: WorkMode | None = None,
    now: dt.datetime = MONDAY_10,
) -> Request:
    u = the_user or user()
    return Request(user=u, work_mode=work_mode or u.work_mode, now=now)


def policy(**kw: Any) -> Policy:
    return Policy(load=LOAD, **kw)
