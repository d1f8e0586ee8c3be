"""Administration pages: hosts, pools, open sessions, users.

The figures come from broker.fleet (the same overview /metrics and `vdi-broker
status` show); every button is one call of the service the CLI and the admin API
use, so the audit log records the administrator as the actor either way.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response

from broker import fleet
from broker.deps import RuntimeDep
from broker.domain import HostState
from broker.hosts import service as hosts
from broker.pools import service as pools
from broker.sessions import service as sessions
from broker.users import service as users
from broker.web.access import AdminForm, AdminPageIdentity
from broker.web.forms import Done, outcome, text
from broker.web.pages import redirect, render

router = APIRouter(prefix="/admin", include_in_schema=False)

USERS_SHOWN = 200
SEARCH_MAX = 64  # the longest name or department (broker.names)


@router.get("")
async def admin_home(_: AdminPageIdentity) -> Response:
    return redirect("/admin/hosts")


# -- hosts -----------------------------------------------------------------------------


@router.get("/hosts")
async def hosts_page(request: Request, rt: RuntimeDep, who: AdminPageIdentity) -> Response:
    state = await fleet.read(rt)
    listed = sorted(state.hosts.values(), key=lambda h: h.name)
    return render(request, rt, "admin/hosts.html", who=who, hosts=listed)


async def _host_state(rt: RuntimeDep, posted: AdminForm, state: HostState, key: str) -> Done:
    host = await hosts.set_state(rt, text(posted.form, "host"), state, posted.who.user.name)
    return Done(key, {"host": host.name})


@router.post("/hosts/drain")
async def drain(request: Request, rt: RuntimeDep, posted: AdminForm) -> Response:
    done = _host_state(rt, posted, HostState.DRAINING, "host.drained")
    return await outcome(request, rt, done, "/admin/hosts")


@router.post("/hosts/activate")
async def activate(request: Request, rt: RuntimeDep, posted: AdminForm) -> Response:
    done = _host_state(rt, posted, HostState.ACTIVE, "host.activated")
    return await outcome(request, rt, done, "/admin/hosts")


@router.post("/hosts/maintenance")
async def maintenance(request: Request, rt: RuntimeDep, posted: AdminForm) -> Response:
    """As the API and the CLI offer it: before a host is rebooted or patched, so
    that not even a persistent desktop's owner is sent there, and its silence
    raises no alert."""
    done = _host_state(rt, posted, HostState.MAINTENANCE, "host.in_maintenance")
    return await outcome(request, rt, done, "/admin/hosts")


# -- pools -------------------------------------------------------------------------------


@router.get("/pools")
async def pools_page(request: Request, rt: RuntimeDep, who: AdminPageIdentity) -> Response:
    state = await fleet.read(rt)
    listed = sorted(state.pools.values(), key=lambda p: p.name)
    settings = {p["name"]: p for p in await pools.list_all(rt)}
    return render(request, rt, "admin/pools.html", who=who, pools=listed, settings=settings)


# -- sessions ---------------------------------------------------------------------------


@router.get("/sessions")
async def sessions_page(request: Request, rt: RuntimeDep, who: AdminPageIdentity) -> Response:
    listed = await sessions.open_sessions(rt)
    return render(request, rt, "admin/sessions.html", who=who, sessions=listed)


@router.post("/sessions/end")
async def end_session(request: Request, rt: RuntimeDep, posted: AdminForm) -> Response:
    async def end() -> Done:
        info = await sessions.end_session(
            rt, posted.who.user, text(posted.form, "session"), admin=True, reason="admin_end"
        )
        return Done("sessions.ended", {"user": info.user, "pool": info.pool})

    return await outcome(request, rt, end(), "/admin/sessions")


# -- users ---------------------------------------------------------------------------------


@router.get("/users")
async def users_page(request: Request, rt: RuntimeDep, who: AdminPageIdentity) -> Response:
    """All users, or those whose name or department contains the search; at most
    USERS_SHOWN rows, so a large administration still gets a usable page."""
    search = _search(request.query_params.get("q", ""))
    everyone = await users.list_all(rt)
    needle = search.lower()
    found = [u for u in everyone if needle in u.name.lower() or needle in u.department.lower()]
    now = rt.clock.now()
    rows = [
        users.as_dict(u, now)
        | {
            "last_login": u.last_login_at,
            # Locked out for a while by failed logins, not by an administrator:
            # the page says until when, and still offers to lock for good.
            "locked_until": u.locked_until if not u.disabled and u.locked_until else None,
        }
        for u in found[:USERS_SHOWN]
    ]
    return render(
        request, rt, "admin/users.html", who=who, users=rows, search=search,
        total=len(found),
    )  # fmt: skip


def _search(typed: str) -> str:
    """The user search as used: no name or department is longer than
    SEARCH_MAX, and a longer one must not travel on in a redirect's Location."""
    return typed.strip()[:SEARCH_MAX].strip()


async def _user_action(request: Request, rt: RuntimeDep, posted: AdminForm, what: str) -> Response:
    async def act() -> Done:
        name, actor = text(posted.form, "user"), posted.who.user.name
        if what == "reset_totp":
            user = await users.reset_totp(rt, name, actor)
            return Done("user.totp_reset", {"user": user.name})
        user = await users.set_locked(rt, name, what == "lock", actor)
        return Done(f"user.{what}ed", {"user": user.name})

    search = _search(text(posted.form, "q"))  # back to the same search
    back = f"/admin/users?{urlencode({'q': search})}" if search else "/admin/users"
    return await outcome(request, rt, act(), back)


@router.post("/users/lock")
async def lock(request: Request, rt: RuntimeDep, posted: AdminForm) -> Response:
    return await _user_action(request, rt, posted, "lock")


@router.post("/users/unlock")
async def unlock(request: Request, rt: RuntimeDep, posted: AdminForm) -> Response:
    return await _user_action(request, rt, posted, "unlock")


@router.post("/users/reset-totp")
async def reset_totp(request: Request, rt: RuntimeDep, posted: AdminForm) -> Response:
    return await _user_action(request, rt, posted, "reset_totp")
