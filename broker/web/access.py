"""Who may see a page or send a form, as FastAPI dependencies for the page routes.

Pages use the API's web sessions (broker.deps.resolve_identity). Where the API
answers 401/403 JSON, a page sends the browser to the login page (with a notice
when its session has timed out) or shows a 403 page. A form is only processed
with the session's CSRF token in its `csrf_token` field. A browser that asks for
an address outside the API that has no page (a typo, a bookmarked /logout) gets
the "not found" page rather than the API's JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Request, Response
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker.auth import websessions
from broker.auth.router import clear_session_cookie
from broker.deps import Identity, RuntimeDep, get_runtime, resolve_identity
from broker.http_errors import (
    DATABASE_ERRORS,
    RETRY_AFTER_S,
    database_error,
    http_error_response,
    internal_error,
    log_database_down,
    security_headers,
)
from broker.store.db_errors import database_down
from broker.web import csrf
from broker.web.forms import read_form
from broker.web.pages import redirect, render


class LoginRequired(Exception):
    """No live session: to the login page; `expired` when the browser had one."""

    def __init__(self, expired: bool) -> None:
        super().__init__("login required")
        self.expired = expired


class NotAdmin(Exception):
    def __init__(self, who: Identity) -> None:
        super().__init__("administrators only")
        self.who = who


class FormRefused(Exception):
    """A form without the right CSRF token: nothing was done."""

    def __init__(self, who: Identity | None) -> None:
        super().__init__("CSRF token missing or wrong")
        self.who = who


async def page_identity(request: Request, rt: RuntimeDep) -> Identity:
    identity = await resolve_identity(request, rt)
    if identity is None:
        had_session = websessions.cookie_name(rt.settings.cookie_secure) in request.cookies
        raise LoginRequired(expired=had_session)
    return identity


PageIdentity = Annotated[Identity, Depends(page_identity)]


async def admin_page_identity(who: PageIdentity) -> Identity:
    if not who.is_admin:
        raise NotAdmin(who)
    return who


AdminPageIdentity = Annotated[Identity, Depends(admin_page_identity)]


@dataclass(frozen=True)
class Posted:
    """A logged-in form whose CSRF token was right."""

    who: Identity
    form: FormData


async def _checked(request: Request, rt: RuntimeDep, who: Identity) -> Posted:
    form = await read_form(request)
    token = form.get(csrf.FIELD)
    if not isinstance(token, str) or not csrf.session_matches(rt, who, token):
        raise FormRefused(who)
    return Posted(who, form)


async def staff_form(request: Request, rt: RuntimeDep, who: PageIdentity) -> Posted:
    return await _checked(request, rt, who)


async def admin_form(request: Request, rt: RuntimeDep, who: AdminPageIdentity) -> Posted:
    return await _checked(request, rt, who)


StaffForm = Annotated[Posted, Depends(staff_form)]
AdminForm = Annotated[Posted, Depends(admin_form)]


NOT_PAGES = ("/api/", "/metrics", "/healthz", "/readyz", "/static/")
HOME = "/desktops"
MAX_TARGET = 2048


def after_login(target: str | None) -> str | None:
    """A page to go on to after logging in (the `next` of the login page), or None.
    Only an address on this site that is a page: "//elsewhere.example" or
    "/\\elsewhere.example" (a browser reads both as another host) would make the
    login form an open redirect, and the API answers JSON, not a page."""
    if not target or len(target) > MAX_TARGET or not target.startswith("/"):
        return None
    if target.startswith("//") or "\\" in target or not target.isprintable():
        return None
    return target if _page_path(target.split("?", 1)[0]) else None


def login_url(target: str | None = None, *, expired: bool = False) -> str:
    """The login page's address, with where to go on after it (`target`, as
    after_login allows it) and whether a session expired."""
    query = {"expired": "1"} if expired else {}
    if target:
        query["next"] = target
    return f"/login?{urlencode(query)}" if query else "/login"


def _login_url(request: Request, expired: bool) -> str:
    """The login page; a page other than My desktops is named as where to go
    on after it, so a bookmark or a link from an alert is not lost."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    page = request.method in ("GET", "HEAD") and request.url.path not in ("/", HOME)
    return login_url(after_login(target) if page else None, expired=expired)


def _page_path(path: str) -> bool:
    """Outside the API, the probes and the static files."""
    return not any(path == p.rstrip("/") or path.startswith(p) for p in NOT_PAGES)


def _wants_page(request: Request) -> bool:
    """A browser loading a page: GET or HEAD for HTML, outside the API and probes."""
    return (
        request.method in ("GET", "HEAD")
        and "text/html" in request.headers.get("accept", "")
        and _page_path(request.url.path)
    )


def install_handlers(app: FastAPI) -> None:
    """Answer the exceptions above as pages, not as the API's JSON."""

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        rt = await get_runtime(request)
        response = redirect(_login_url(request, exc.expired))
        if exc.expired:
            # The dead cookie goes, so the notice shows once, not at every visit.
            clear_session_cookie(response, rt)
        return response

    @app.exception_handler(NotAdmin)
    async def _not_admin(request: Request, exc: NotAdmin) -> Response:
        rt = await get_runtime(request)
        return render(request, rt, "message.html", who=exc.who, status=403, kind="forbidden")

    @app.exception_handler(StarletteHTTPException)
    async def _no_page(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code not in (404, 405) or not _wants_page(request):
            return http_error_response(exc)
        rt = await get_runtime(request)
        try:
            who = await resolve_identity(request, rt)
        except Exception as exc:
            # The page needs no login: a database that is away must not turn
            # a typo's 404 into a 500.
            if not database_down(exc):
                raise
            who = None
        # Not the address asked for: "//elsewhere.example/x" would make the
        # language switch a link to another site.
        here = "/desktops" if who else "/login"
        return render(request, rt, "message.html", who=who, status=404, kind="notfound", here=here)

    async def _database(request: Request, exc: Exception) -> Response:
        """A page while the database is away (a PostgreSQL restart or fail-over)
        says so in the page's language, instead of the API's JSON in English;
        it needs no database itself, so nobody is named as logged in."""
        if not (_page_path(request.url.path) and database_down(exc)):
            return await database_error(request, exc)
        rt = await get_runtime(request)
        log_database_down(exc)
        page = render(request, rt, "message.html", status=503, kind="unavailable")
        page.headers["Retry-After"] = str(RETRY_AFTER_S)
        return page

    for kind in DATABASE_ERRORS:
        app.add_exception_handler(kind, _database)

    async def _internal(request: Request, exc: Exception) -> Response:
        """A fault of the broker on a page: a page in the page's language, not
        the API's JSON in English (Starlette logs the fault after this)."""
        if not _page_path(request.url.path):
            return await internal_error(request, exc)
        try:
            rt = await get_runtime(request)
            page = render(request, rt, "message.html", status=500, kind="fault")
        except Exception:
            # No page to be had either: the API's answer, which needs nothing.
            return await internal_error(request, exc)
        # Past the SecurityHeaders middleware, like the API's answer; the page
        # keeps its own Content-Security-Policy, as the middleware lets it.
        for name, value in security_headers().items():
            page.headers.setdefault(name, value)
        return page

    app.add_exception_handler(Exception, _internal)

    @app.exception_handler(FormRefused)
    async def _refused(request: Request, exc: FormRefused) -> Response:
        rt = await get_runtime(request)
        return render(request, rt, "message.html", who=exc.who, status=403, kind="csrf")
