"""The per-host queue of power actions (start, stop, reboot, reset).

An action is returned with every report response until the agent reports its
result, so it is delivered at least once; the agent executes each id only once.
`hosts.pending_actions` counts open actions so a report without any costs no
query here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update

from agent.protocol import Action, ActionKind, ActionResult, PowerState
from broker.store.db import Executor
from broker.store.tables import Desktop, Host, HostAction, table

MAX_PER_RESPONSE = 500

_actions = table(HostAction)
_hosts = table(Host)
_desktops = table(Desktop)
_OPEN = (
    select(_actions.c.id, _actions.c.kind, _actions.c.desktop_name)
    .where(_actions.c.host_id == bindparam("host_id"), _actions.c.state == "queued")
    .order_by(_actions.c.created_at, _actions.c.id)
    .limit(MAX_PER_RESPONSE)
)


@dataclass(frozen=True)
class Finished:
    action_id: str
    kind: str
    desktop_id: int | None
    reason: str
    ok: bool
    desktop_name: str = ""
    error: str | None = None  # the agent's words, when it failed


async def queue(
    s: Executor,
    now: dt.datetime,
    *,
    host_id: int,
    desktop_id: int | None,
    desktop_name: str,
    kind: ActionKind,
    reason: str,
) -> str:
    """Queue an action; it goes out with the host's next report response."""
    action_id = uuid.uuid4().hex
    await s.execute(
        _actions.insert().values(
            id=action_id,
            host_id=host_id,
            desktop_id=desktop_id,
            desktop_name=desktop_name,
            kind=kind.value,
            reason=reason,
            state="queued",
            deliveries=0,
            created_at=now,
        )
    )
    await s.execute(
        update(_hosts)
        .where(_hosts.c.id == host_id)
        .values(pending_actions=_hosts.c.pending_actions + 1)
    )
    return action_id


def may_hold_logon(power_state: str) -> bool:
    """Whether a desktop's guest may still hold a user's logon: in every power state
    but stopped. A paused or crashed guest keeps its memory, and one starting,
    stopping or in a state the hypervisor cannot name may be running still; only a
    stopped guest has certainly let go (its next boot is clean)."""
    return power_state != PowerState.STOPPED.value


async def reset_for_reuse(
    s: Executor,
    now: dt.datetime,
    *,
    host_id: int,
    desktop_id: int,
    desktop_name: str,
    reason: str,
) -> str:
    """Queue a reset of a desktop that is to go to someone else, and keep it from
    being handed out until the agent reports the reset done (hosts.ingest)."""
    await s.execute(
        update(_desktops)
        .where(_desktops.c.id == desktop_id)
        .values(needs_reset=True, idle_since=None)
    )
    return await queue(
        s,
        now,
        host_id=host_id,
        desktop_id=desktop_id,
        desktop_name=desktop_name,
        kind=ActionKind.RESET,
        reason=reason,
    )


async def deliver(s: Executor, host_id: int) -> list[Action]:
    """The host's open actions, oldest first, counted as delivered once more."""
    rows = (await s.execute(_OPEN, {"host_id": host_id})).all()
    if rows:
        await s.execute(
            update(_actions)
            .where(_actions.c.id.in_([r.id for r in rows]))
            .values(deliveries=_actions.c.deliveries + 1)
        )
    return [Action(id=r.id, kind=ActionKind(r.kind), desktop=r.desktop_name) for r in rows]


async def record_results(
    s: Executor, host_id: int, results: Sequence[ActionResult], now: dt.datetime
) -> list[Finished]:
    """Close the actions the agent reports on; ids of other hosts or already
    closed actions are ignored (a result may arrive twice)."""
    by_id = {r.id: r for r in results}
    rows = (
        await s.execute(
            select(
                _actions.c.id,
                _actions.c.kind,
                _actions.c.desktop_id,
                _actions.c.desktop_name,
                _actions.c.reason,
            ).where(
                _actions.c.host_id == host_id,
                _actions.c.state == "queued",
                _actions.c.id.in_(list(by_id)),
            )
        )
    ).all()
    finished = []
    for row in rows:
        result = by_id[row.id]
        await s.execute(
            update(_actions)
            .where(_actions.c.id == row.id)
            .values(
                state="done" if result.ok else "failed",
                error=(result.error or "")[:512] or None,
                finished_at=now,
            )
        )
        finished.append(
            Finished(
                row.id,
                row.kind,
                row.desktop_id,
                row.reason,
                result.ok,
                row.desktop_name,
                None if result.ok else (result.error or "")[:200] or None,
            )
        )
    if finished:
        await s.execute(
            update(_hosts)
            .where(_hosts.c.id == host_id)
            .values(pending_actions=_hosts.c.pending_actions - len(finished))
        )
    return finished
