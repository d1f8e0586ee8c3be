"""A desktop that its host now reports in another pool (libvirt metadata, the
agent's --pool, or the broker's pool_rules changed).

The owner of a persistent desktop and any logon on it belong to the old pool:
in a floating pool anybody may take the desktop next, in a persistent one it
goes to whoever is assigned it. So a moved desktop loses its owner and, unless
it is stopped, is reset by its agent before anyone gets it: the same reset
that recycles a floating desktop after a session (actions.reset_for_reuse).
Desktops with an open session do not move (broker.hosts.inventory).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from sqlalchemy import select, update

from broker.audit import log as audit
from broker.hosts import actions
from broker.hosts.inventory import PoolMove
from broker.hosts.known import KnownHost
from broker.store.db import Executor
from broker.store.tables import Desktop, Pool, User, table

log = logging.getLogger(__name__)

_desktops = table(Desktop)
_pools = table(Pool)
_users = table(User)


async def apply_moves(
    conn: Executor, now: dt.datetime, host: KnownHost, moves: Sequence[PoolMove]
) -> None:
    """Clear the moved desktops' owners, queue their resets, audit each move."""
    if not moves:
        return
    ids = [m.id for m in moves]
    before = {
        r.id: r
        for r in (
            await conn.execute(
                select(_desktops.c.id, _desktops.c.needs_reset, _users.c.name.label("owner"))
                .outerjoin(_users, _users.c.id == _desktops.c.assigned_user_id)
                .where(_desktops.c.id.in_(ids))
            )
        ).all()
    }
    pools = dict((await conn.execute(select(_pools.c.id, _pools.c.name))).all())
    await conn.execute(
        update(_desktops).where(_desktops.c.id.in_(ids)).values(assigned_user_id=None)
    )
    for move in moves:
        row = before[move.id]
        reset = actions.may_hold_logon(move.power_state)
        # A desktop that needs a reset already has one queued, or the lifecycle
        # job queues it again (broker.sessions.lifecycle).
        if reset and not row.needs_reset:
            await actions.reset_for_reuse(
                conn,
                now,
                host_id=host.id,
                desktop_id=move.id,
                desktop_name=move.name,
                reason="pool_move",
            )
        from_pool, to_pool = pools.get(move.from_pool_id), pools.get(move.to_pool_id)
        await audit.record(
            conn,
            now,
            "desktop_moved",
            username=row.owner,
            actor=host.name,
            detail={
                "desktop": move.name,
                "host": host.name,
                "from_pool": from_pool,
                "to_pool": to_pool,
                "reset": reset or row.needs_reset,
            },
        )
        log.info(
            "host %s: desktop %s moved from pool %s to %s%s%s",
            host.name,
            move.name,
            from_pool,
            to_pool,
            f", no longer {row.owner}'s" if row.owner else "",
            ", reset before reuse" if reset or row.needs_reset else "",
        )
