"""Pages of staff: My desktops, starting a desktop, how to connect, logging off.

Assignment, refusals, tickets and ending a session are broker.sessions.service's;
a refusal comes back in the page's language and is shown as it is.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from broker.deps import RuntimeDep
from broker.domain import Protocol, SessionState
from broker.errors import NotFound, VdiError
from broker.sessions import service
from broker.web import rdp
from broker.web.access import PageIdentity, StaffForm
from broker.web.forms import Done, outcome, text
from broker.web.i18n import error_text
from broker.web.pages import Notice, language_of, redirect, redirect_with, render
from broker.web.shell import command_line

router = APIRouter(include_in_schema=False)


@router.get("/desktops")
async def my_desktops(request: Request, rt: RuntimeDep, who: PageIdentity) -> Response:
    pools = await service.pools_for(rt, who.user)
    sessions = await service.sessions_of(rt, who.user.id)
    return render(
        request, rt, "desktops.html", who=who, pools=pools, sessions=sessions,
        open_in={s.pool: s for s in sessions},
    )  # fmt: skip


@router.post("/desktops/start")
async def start_desktop(request: Request, rt: RuntimeDep, posted: StaffForm) -> Response:
    """Get a desktop of a pool (or the open session there) and show how to connect."""
    language = language_of(request, rt)
    try:
        got = await service.request_session(
            rt, posted.who.user, text(posted.form, "pool"), None, language
        )
    except VdiError as exc:
        return redirect_with("/desktops", rt, Notice("error", error_text(exc, language)))
    return redirect(f"/sessions/{got.session.id}")


def _not_found(request: Request, rt: RuntimeDep, who: PageIdentity) -> Response:
    return render(request, rt, "message.html", who=who, status=404, kind="notfound")


@router.get("/sessions/{session_id}")
async def connect_page(
    session_id: str, request: Request, rt: RuntimeDep, who: PageIdentity
) -> Response:
    """Connect details with a fresh one-time ticket; while the desktop starts,
    a small script (static/portal.js) reloads the page once it is ready."""
    try:
        got = await service.get_session(rt, who.user, session_id, admin=False)
    except NotFound:
        return _not_found(request, rt, who)
    session, connect = got.session, got.connect
    url = rt.settings.effective_public_url
    command = command_line(["vdi-connect", url, "--user", session.user, "--pool", session.pool])
    return render(
        request, rt, "session.html", who=who, session=session, connect=connect,
        pending=session.state == SessionState.PENDING, vdi_connect=command,
        ticket_ttl=int(rt.settings.ticket_ttl_s),
    )  # fmt: skip


@router.get("/sessions/{session_id}/desktop.rdp")
async def rdp_download(
    session_id: str, request: Request, rt: RuntimeDep, who: PageIdentity
) -> Response:
    """The .rdp file for the tunnel's local port (no ticket in it)."""
    mine = {s.id: s for s in await service.sessions_of(rt, who.user.id)}
    session = mine.get(session_id)
    if session is None or session.protocol != Protocol.RDP:
        return _not_found(request, rt, who)
    return Response(
        rdp.rdp_file(service.LOCAL_PORTS[Protocol.RDP]),
        media_type="application/x-rdp",
        headers={"Content-Disposition": f'attachment; filename="{rdp.file_name(session.pool)}"'},
    )


@router.post("/sessions/{session_id}/end")
async def log_off(session_id: str, request: Request, rt: RuntimeDep, posted: StaffForm) -> Response:
    async def end() -> Done:
        info = await service.end_session(
            rt, posted.who.user, session_id, admin=False, reason="user_logoff"
        )
        return Done("session.ended", {"pool": info.pool})

    return await outcome(request, rt, end(), "/desktops")
