"""Managing hosts: register (with an agent token), drain, activate, list."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from broker.audit import log as audit
from broker.domain import HostState
from broker.errors import Conflict, NotFound
from broker.hosts.health import fresh_after, is_up
from broker.names import check_host_name, same_but_case
from broker.runtime import Runtime
from broker.security.tokens import new_token, token_hash
from broker.store.tables import Desktop, Host


async def add(rt: Runtime, name: str, actor: str) -> str:
    """Register a host and return its agent token; only the token's hash is stored."""
    name = check_host_name(name)
    token = new_token()
    now = rt.clock.now()
    try:
        async with rt.db.write() as s:
            taken = same_but_case(name, await s.scalars(select(Host.name)))
            if taken is not None:
                raise Conflict(f"A host named {taken!r} exists already.", code="exists")
            s.add(
                Host(
                    name=name,
                    token_hash=token_hash(token),
                    state=HostState.ACTIVE.value,
                    created_at=now,
                )
            )
            await s.flush()
            await audit.record(s, now, "host_added", actor=actor, detail={"host": name})
    except IntegrityError as exc:
        raise Conflict(f"A host named {name!r} exists already.", code="exists") from exc
    return token


async def rotate_token(rt: Runtime, name: str, actor: str) -> str:
    """A new agent token for a host; the old one stops working at once."""
    token = new_token()
    now = rt.clock.now()
    async with rt.db.write() as s:
        host = await s.scalar(select(Host).where(Host.name == name))
        if host is None:
            raise NotFound(f"There is no host {name!r}.")
        host.token_hash = token_hash(token)
        await audit.record(s, now, "host_token_rotated", actor=actor, detail={"host": name})
    return token


async def set_state(rt: Runtime, name: str, state: HostState, actor: str) -> Host:
    now = rt.clock.now()
    async with rt.db.write() as s:
        host = await s.scalar(select(Host).where(Host.name == name))
        if host is None:
            raise NotFound(f"There is no host {name!r}.")
        host.state = state.value
        event = {
            HostState.DRAINING: "host_drained",
            HostState.ACTIVE: "host_activated",
            HostState.MAINTENANCE: "host_maintenance",
        }[state]
        await audit.record(s, now, event, actor=actor, detail={"host": name, "state": state.value})
    return host


async def list_all(rt: Runtime) -> list[dict[str, Any]]:
    now = rt.clock.now()
    settings = rt.settings
    fresh_since = fresh_after(now, settings.report_interval, settings.host_down_after_missed)
    async with rt.db.read() as s:
        hosts = (await s.scalars(select(Host).order_by(Host.name))).all()
        # Missing desktops (gone from the host's reports) are kept only for their
        # history; a host has the desktops it reports, as the fleet view counts.
        per_host = (
            select(Desktop.host_id, func.count())
            .where(Desktop.missing.is_(False))
            .group_by(Desktop.host_id)
        )
        counts = {host_id: n for host_id, n in (await s.execute(per_host)).all()}
    return [
        {
            "name": h.name,
            "state": h.state,
            "up": is_up(h.last_report_at, fresh_since),
            "agent_version": h.agent_version,
            "last_report_at": h.last_report_at.isoformat() if h.last_report_at else None,
            "report_age_s": round((now - h.last_report_at).total_seconds(), 1)
            if h.last_report_at
            else None,
            "desktops": counts.get(h.id, 0),
        }
        for h in hosts
    ]
