"""Pages of logging in, first-login enrolment of the authenticator app, logging out.

The flow and its checks are broker.auth's (login, enrolment); these routes only
read forms, check the pre-login CSRF field and show the outcome. Failed logins
re-render the form with the right status (401, 423, 429) and the typed user name;
nothing about which factor was wrong is said.

The enrolment token from a right password without TOTP lives in an HttpOnly,
SameSite=Strict cookie for its short life, never in a page or URL.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from markupsafe import Markup
from starlette.datastructures import FormData

from broker.auth import enrolment, totp
from broker.auth import login as login_flow
from broker.auth.code_formats import RECOVERY_CODE_RE, ungrouped
from broker.auth.router import begin_session, end_session
from broker.deps import ClientDep, RuntimeDep, resolve_identity
from broker.errors import Forbidden, Unauthorized, VdiError
from broker.runtime import Runtime
from broker.web import cookies, csrf
from broker.web.access import HOME, StaffForm, after_login, login_url
from broker.web.forms import read_form, text
from broker.web.i18n import error_text
from broker.web.pages import Notice, language_of, redirect, redirect_with, render, say

router = APIRouter(include_in_schema=False)

MAX_USERNAME = 128  # as the API's login body
MAX_PASSWORD = 1024
ENROL_COOKIE = "vdi_enrol"


@router.get("/")
async def home() -> Response:
    return redirect(HOME)


# -- login ------------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request, rt: RuntimeDep, client: ClientDep) -> Response:
    target = after_login(request.query_params.get("next"))
    if await resolve_identity(request, rt) is not None:
        return redirect(target or HOME)
    expired = request.query_params.get("expired") == "1"
    notice = say(request, rt, "info", "login.expired") if expired else None
    page = render(
        request, rt, "login.html", prelogin=True, notice=notice, username="", recovery_open=False,
        next=target or "",
    )  # fmt: skip
    await _end_left_enrolment(request, rt, page, client)
    return page


async def _end_left_enrolment(
    request: Request, rt: Runtime, response: Response, client: login_flow.Client
) -> None:
    """A browser back at the login page with an enrolment cookie left the set-up
    without finishing or cancelling it (a link, the back button, the address bar).
    That enrolment ends here: else whoever uses the browser next could open
    /enrol and bind their own app to the account within the enrolment's life."""
    token = cookies.read(request, rt, ENROL_COOKIE)
    if token:
        await enrolment.cancel(rt, token, client.ip)
        cookies.clear(response, rt, ENROL_COOKIE)


def _credentials(username: str, password: str, code: str, recovery: str) -> str | None:
    """The catalogue key of what is wrong with the form, or None."""
    if not username or not password:
        return "login.missing"
    if code and recovery:
        return "login.both"
    if code and not totp.is_well_formed(code):
        return "login.bad_code"
    if recovery and not RECOVERY_CODE_RE.fullmatch(recovery):
        return "login.bad_recovery"
    return None


@router.post("/login")
async def login_submit(request: Request, rt: RuntimeDep, client: ClientDep) -> Response:
    form = await read_form(request)
    username = text(form, "username")
    password = form.get("password")
    password = password if isinstance(password, str) else ""
    code, recovery = ungrouped(text(form, "code")), text(form, "recovery_code")
    target = after_login(text(form, "next"))

    def again(status: int, notice: Notice, headers: dict[str, str] | None = None) -> Response:
        page = render(
            request, rt, "login.html", status=status, prelogin=True, notice=notice,
            here=login_url(target), username=username[:MAX_USERNAME],
            recovery_open=bool(recovery), next=target or "",
        )  # fmt: skip
        page.headers.update(headers or {})
        return page

    if not csrf.prelogin_matches(request, rt, text(form, csrf.FIELD)):
        return again(403, say(request, rt, "error", "csrf.text"))
    problem = _credentials(username, password, code, recovery)
    if problem:
        return again(422, say(request, rt, "error", problem))
    try:
        if len(username) > MAX_USERNAME or len(password) > MAX_PASSWORD:
            raise Unauthorized(login_flow.INVALID_MESSAGE, code=login_flow.INVALID)
        creds = login_flow.Credentials(username, password, code or None, recovery or None)
        done = await login_flow.login(rt, creds, client)
    except Forbidden as exc:
        if exc.code != "totp_enrollment_required":
            raise
        response = redirect("/enrol")
        token, ttl = str(exc.extra["enrolment_token"]), int(exc.extra["expires_in"])
        cookies.put(response, rt, ENROL_COOKIE, token, ttl)
        return response
    except VdiError as exc:
        message = error_text(exc, language_of(request, rt))
        return again(exc.status, Notice("error", message), exc.headers)
    response = redirect(target or HOME)
    await begin_session(request, response, rt, done.web)
    return response


@router.post("/logout")
async def logout(
    request: Request, posted: StaffForm, rt: RuntimeDep, client: ClientDep
) -> Response:
    response = redirect_with("/login", rt, say(request, rt, "ok", "login.logged_out"))
    await end_session(posted.who, response, rt, client)
    return response


# -- enrolment -------------------------------------------------------------------------------


async def _enrol_page(
    request: Request, rt: Runtime, token: str, status: int = 200, notice: Notice | None = None
) -> Response:
    """The enrolment page with the secret made before (or a first one)."""
    try:
        setup = await enrolment.create_secret(rt, token, reuse=True)
    except enrolment.EnrolmentInvalid as gone:
        return _restart(request, rt, gone)
    return render(
        request, rt, "enrol.html", status=status, prelogin=True, notice=notice, here="/enrol",
        secret=setup.secret, qr_svg=Markup(setup.qr_svg),  # noqa: S704 - segno's SVG of our URI
    )  # fmt: skip


def _restart(request: Request, rt: Runtime, gone: enrolment.EnrolmentInvalid) -> Response:
    """The enrolment is gone (expired, used, too many wrong codes): log in again.
    Wrong codes are said as such: a phone whose clock is off makes them, and
    "expired" would send its owner to try the same again."""
    key = "enrol.too_many_codes" if gone.reason == "too_many_codes" else "enrol.expired"
    response = redirect_with("/login", rt, say(request, rt, "error", key))
    cookies.clear(response, rt, ENROL_COOKIE)
    return response


@router.get("/enrol")
async def enrol_page(request: Request, rt: RuntimeDep) -> Response:
    token = cookies.read(request, rt, ENROL_COOKIE)
    if not token:
        return redirect("/login")
    return await _enrol_page(request, rt, token)


async def _enrol_form(request: Request, rt: Runtime) -> tuple[str, FormData] | Response:
    """The enrolment token and a form with the right CSRF field, or the answer
    when either is missing."""
    token = cookies.read(request, rt, ENROL_COOKIE)
    if not token:
        return redirect("/login")
    form = await read_form(request)
    if not csrf.prelogin_matches(request, rt, text(form, csrf.FIELD)):
        return await _enrol_page(request, rt, token, 403, say(request, rt, "error", "csrf.text"))
    return token, form


@router.post("/enrol")
async def enrol_confirm(request: Request, rt: RuntimeDep, client: ClientDep) -> Response:
    """Confirm with a code; the recovery codes are shown in this answer, once,
    and stored nowhere, so there is no redirect to a page that could show them."""
    checked = await _enrol_form(request, rt)
    if isinstance(checked, Response):
        return checked
    token, form = checked
    try:
        codes = await enrolment.confirm(rt, token, ungrouped(text(form, "code")), client.ip)
    except enrolment.EnrolmentInvalid as gone:
        return _restart(request, rt, gone)
    except VdiError as exc:
        notice = Notice("error", error_text(exc, language_of(request, rt)))
        page = await _enrol_page(request, rt, token, exc.status, notice)
        page.headers.update(exc.headers)
        return page
    page = render(request, rt, "recovery_codes.html", codes=codes)
    cookies.clear(page, rt, ENROL_COOKIE)
    return page


@router.post("/enrol/cancel")
async def enrol_cancel(request: Request, rt: RuntimeDep, client: ClientDep) -> Response:
    """Stop setting up: the enrolment ends, and the login page says how to go on."""
    checked = await _enrol_form(request, rt)
    if isinstance(checked, Response):
        return checked
    await enrolment.cancel(rt, checked[0], client.ip)
    response = redirect_with("/login", rt, say(request, rt, "ok", "enrol.cancelled"))
    cookies.clear(response, rt, ENROL_COOKIE)
    return response


@router.post("/enrol/renew")
async def enrol_renew(request: Request, rt: RuntimeDep) -> Response:
    """A new secret, for when scanning the first one failed."""
    checked = await _enrol_form(request, rt)
    if isinstance(checked, Response):
        return checked
    try:
        await enrolment.create_secret(rt, checked[0])
    except enrolment.EnrolmentInvalid as gone:
        return _restart(request, rt, gone)
    return redirect_with("/enrol", rt, say(request, rt, "ok", "enrol.renewed"))
