"""Managing pools: add and list (CLI and admin API)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from broker.audit import log as audit
from broker.domain import PoolType, Protocol
from broker.errors import Conflict, InvalidInput
from broker.names import check_label
from broker.runtime import Runtime
from broker.store.tables import Pool, PoolEntitlement

MAX_LICENCES = 100_000


@dataclass(frozen=True)
class NewPool:
    name: str
    type: PoolType
    protocol: Protocol
    max_sessions: int
    departments: list[str] = field(default_factory=list)
    field: bool = False


def validate(new: NewPool) -> NewPool:
    if not 0 <= new.max_sessions <= MAX_LICENCES:
        raise InvalidInput(
            f"max-sessions is a licence count from 0 to {MAX_LICENCES}.", code="invalid_limit"
        )
    return NewPool(
        name=check_label(new.name, "pool"),
        type=PoolType(new.type),
        protocol=Protocol(new.protocol),
        max_sessions=new.max_sessions,
        departments=sorted({check_label(d, "department") for d in new.departments}),
        field=new.field,
    )


async def add(rt: Runtime, new: NewPool, actor: str) -> Pool:
    new = validate(new)
    now = rt.clock.now()
    pool = Pool(
        name=new.name,
        type=new.type.value,
        protocol=new.protocol.value,
        max_sessions=new.max_sessions,
        field=new.field,
        created_at=now,
    )
    try:
        async with rt.db.write() as s:
            s.add(pool)
            await s.flush()
            s.add_all(
                PoolEntitlement(pool_id=pool.id, kind="department", value=d)
                for d in new.departments
            )
            await audit.record(
                s,
                now,
                "pool_added",
                actor=actor,
                detail={
                    "pool": new.name,
                    "max_sessions": new.max_sessions,
                    "departments": new.departments,
                },
            )
    except IntegrityError as exc:
        raise Conflict(f"A pool named {new.name!r} exists already.", code="exists") from exc
    return pool


async def list_all(rt: Runtime) -> list[dict[str, Any]]:
    async with rt.db.read() as s:
        pools = (await s.scalars(select(Pool).order_by(Pool.name))).all()
        ents = (await s.scalars(select(PoolEntitlement))).all()
    by_pool: dict[int, list[PoolEntitlement]] = {}
    for e in ents:
        by_pool.setdefault(e.pool_id, []).append(e)
    return [
        {
            "name": p.name,
            "type": p.type,
            "protocol": p.protocol,
            "max_sessions": p.max_sessions,
            "field": p.field,
            "departments": sorted(e.value for e in by_pool.get(p.id, []) if e.kind == "department"),
            "users": sorted(e.value for e in by_pool.get(p.id, []) if e.kind == "user"),
        }
        for p in pools
    ]
