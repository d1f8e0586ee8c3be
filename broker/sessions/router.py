"""HTTP endpoints of desktops and sessions, for staff and administrators."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Response
from pydantic import BaseModel, ConfigDict, Field

from broker.deps import AdminDep, IdentityDep, RuntimeDep
from broker.domain import WorkMode
from broker.i18n import negotiate
from broker.sessions import service

router = APIRouter(prefix="/api/v1", tags=["sessions"])

STATUS = {"assigned": 201, "reconnected": 200, "pending": 202}


class SessionRequest(BaseModel):
    # Pool names are stored without surrounding whitespace (broker.names), and
    # the CLI strips what it is given: so does the API.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    pool: str = Field(min_length=1, max_length=64)
    work_mode: WorkMode | None = None


def _body(outcome: service.Outcome) -> dict[str, Any]:
    return {
        "result": outcome.result,
        "session": outcome.session.as_dict(),
        "connect": outcome.connect.as_dict() if outcome.connect else None,
    }


@router.get("/desktops")
async def my_desktops(identity: IdentityDep, rt: RuntimeDep) -> dict[str, Any]:
    """The pools this user may use, with their free places, and the user's sessions."""
    pools = [
        {
            "name": pool.name,
            "type": pool.type,
            "protocol": pool.protocol,
            "for_field_work": pool.for_field_work,
            "free": pool.free,
            "capacity": pool.usable,
            "licences": pool.max_sessions,
        }
        for pool in await service.pools_for(rt, identity.user)
    ]
    sessions = await service.sessions_of(rt, identity.user.id)
    return {"pools": pools, "sessions": [s.as_dict() for s in sessions]}


@router.post("/sessions")
async def request_session(
    body: SessionRequest,
    identity: IdentityDep,
    rt: RuntimeDep,
    response: Response,
    accept_language: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    language = negotiate(accept_language, rt.settings.language)
    outcome = await service.request_session(rt, identity.user, body.pool, body.work_mode, language)
    response.status_code = STATUS[outcome.result]
    return _body(outcome)


@router.get("/sessions/{session_id}")
async def get_session(
    session_id: str, identity: IdentityDep, rt: RuntimeDep, response: Response
) -> dict[str, Any]:
    outcome = await service.get_session(rt, identity.user, session_id, admin=identity.is_admin)
    if outcome.result == "pending":
        response.status_code = 202
    return _body(outcome)


@router.delete("/sessions/{session_id}")
async def end_session(session_id: str, identity: IdentityDep, rt: RuntimeDep) -> dict[str, Any]:
    """Log off (the owner) or end (an administrator) a session."""
    mine = any(s.id == session_id for s in await service.sessions_of(rt, identity.user.id))
    reason = "user_logoff" if mine else "admin_end"
    info = await service.end_session(
        rt, identity.user, session_id, admin=identity.is_admin, reason=reason
    )
    return {"session": info.as_dict()}


@router.get("/admin/sessions")
async def admin_sessions(_: AdminDep, rt: RuntimeDep) -> dict[str, Any]:
    return {"items": [info.admin_dict() for info in await service.open_sessions(rt)]}
