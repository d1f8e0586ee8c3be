"""The portal's page handlers over HTTP (in process): status codes, redirects,
cookies, CSRF, languages, and that every form changes only what it should."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from agent.protocol import PowerState
from broker.app import create_app
from broker.audit import log as audit
from broker.clock import FakeClock
from broker.domain import HostState, Role, WorkMode
from broker.policy import store as policy_store
from broker.pools import service as pool_service
from broker.runtime import Runtime
from broker.sessions import service as session_service
from broker.store.tables import Enrolment, Host, Session, User, WebSession
from tests.support.accounts import PASSWORD, add_user, code_now
from tests.support.fleet import COOKIE, FakeAgent, add_pool, ask, reporting_host, staff
from tests.support.portal import (
    assert_no_inline_code,
    assert_page_headers,
    csrf_of,
    notice_of,
    post_form,
)

ROW_HEADER = r'<th scope="row"[^>]*>{}</th>'
ADMIN_PAGES = (
    "/admin/hosts",
    "/admin/pools",
    "/admin/sessions",
    "/admin/users",
    "/admin/policies",
    "/admin/audit",
)


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """Pages only call services (tested on both stores); SQLite is enough here."""
    return sqlite_url


def enter(client: httpx.AsyncClient, who: dict[str, str]) -> None:
    """Give the client the session cookie of a `staff()` login, as a browser holds
    it (and no other)."""
    client.cookies.clear()
    name, _, value = who["cookie"].partition("=")
    client.cookies.set(name, value, domain="testserver.local")


async def start_desktop(client: httpx.AsyncClient) -> httpx.Response:
    """Press "start" for pool Finanzen on My desktops."""
    return await post_form(client, "/desktops", "/desktops/start", {"pool": "Finanzen"})


async def log_in(
    client: httpx.AsyncClient, name: str = "maria", password: str = PASSWORD, **fields: str
) -> httpx.Response:
    """Send the login form as a browser does: the page first, for its CSRF field."""
    return await post_form(
        client, "/login", "/login", {"username": name, "password": password} | fields
    )


async def fleet_with_desktops(
    rt: Runtime,
    client: httpx.AsyncClient,
    desktops: int = 2,
    max_sessions: int = 40,
    power: PowerState = PowerState.RUNNING,
) -> FakeAgent:
    await add_pool(rt, max_sessions=max_sessions)
    return await reporting_host(rt, client, desktops, power=power)


async def audit_events(rt: Runtime, event: str) -> list[str | None]:
    async with rt.db.read() as s:
        return [e.result for e in await audit.query(s, audit.AuditQuery(event=event))]


# -- language, headers, static files ------------------------------------------------------


async def test_german_by_default_english_by_header_or_switch(
    client: httpx.AsyncClient,
) -> None:
    german = await client.get("/login")
    assert german.status_code == 200
    assert '<html lang="de">' in german.text and "Anmeldung" in german.text
    english = await client.get("/login", headers={"accept-language": "en-GB,en;q=0.9"})
    assert '<html lang="en">' in english.text and "Log in" in english.text
    prefers_german = await client.get("/login", headers={"accept-language": "fr, de;q=0.5"})
    assert '<html lang="de">' in prefers_german.text

    # The switch is remembered (a cookie) over the browser's header.
    switched = await client.get("/login?lang=en", headers={"accept-language": "de"})
    assert '<html lang="en">' in switched.text
    assert "vdi_lang=en" in switched.headers["set-cookie"]
    later = await client.get("/login", headers={"accept-language": "de"})
    assert '<html lang="en">' in later.text
    assert 'href="/login?lang=de"' in later.text
    back = await client.get("/login?lang=de")
    assert '<html lang="de">' in back.text


async def test_pages_carry_the_page_csp_and_no_inline_code(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await fleet_with_desktops(runtime, client)
    login = await client.get("/login")
    assert_page_headers(login)
    assert_no_inline_code(login.text)
    enter(client, await staff(runtime, "ada", role=Role.ADMIN))
    sid = (await start_desktop(client)).headers["location"]
    for path in ("/desktops", sid, *ADMIN_PAGES):
        page = await client.get(path)
        assert page.status_code == 200, path
        assert_page_headers(page)
        assert_no_inline_code(page.text)
    # The API keeps its own, stricter policy.
    api = await client.get("/api/v1/desktops")
    assert api.headers["content-security-policy"].startswith("default-src 'none'")


async def test_static_files_are_cached_by_version(client: httpx.AsyncClient) -> None:
    html = (await client.get("/login")).text
    css = re.search(r'href="(/static/portal\.css\?v=[0-9a-f]+)"', html)
    js = re.search(r'src="(/static/portal\.js\?v=[0-9a-f]+)"', html)
    assert css and js
    versioned = await client.get(css.group(1))
    assert versioned.status_code == 200
    assert versioned.headers["content-type"].startswith("text/css")
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    plain = await client.get("/static/portal.js")
    assert plain.headers["cache-control"] == "public, no-cache"
    assert plain.headers["content-type"].startswith("text/javascript")
    again = await client.get("/static/portal.js", headers={"if-none-match": plain.headers["etag"]})
    assert again.status_code == 304
    assert (await client.get("/static/nothing.css")).status_code == 404
    assert (await client.get("/static/..%2Fpages.py")).status_code == 404


# -- login, logout, timeouts ----------------------------------------------------------------


async def test_login_sets_the_session_cookie_as_the_api_does(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    secret = await add_user(runtime)
    assert secret
    page = await client.get("/login")
    assert "__Host-vdi_login_csrf=" in page.headers["set-cookie"]
    response = await log_in(client, "Maria ", code=code_now(runtime, secret))
    assert response.status_code == 303 and response.headers["location"] == "/desktops"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    for attribute in ("HttpOnly", "Path=/", "SameSite=strict", "Secure"):
        assert attribute in cookie
    desktops = await client.get("/desktops")
    assert desktops.status_code == 200 and "maria" in desktops.text
    # Logged in, the login page sends the browser on.
    assert (await client.get("/login")).headers["location"] == "/desktops"
    assert await audit_events(runtime, "login") == ["success"]


def in_groups(code: str) -> str:
    """A code as authenticator apps show it: "123 456"."""
    return f"{code[:3]} {code[3:]}"


async def test_a_code_in_two_groups_as_the_app_shows_it_logs_in(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    secret = await add_user(runtime)
    assert secret
    code = code_now(runtime, secret)
    for typed in ("1234 56", "123  456", "123-456", "12 34 56"):
        refused = await log_in(client, code=typed)
        assert refused.status_code == 422, typed
        assert notice_of(refused.text) == "Der Code aus der App hat 6 Ziffern."
    response = await log_in(client, code=in_groups(code))
    assert response.status_code == 303 and response.headers["location"] == "/desktops"
    assert await audit_events(runtime, "login") == ["success"]


async def test_wrong_login_answers_401_and_keeps_the_user_name(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime)
    client.headers["accept-language"] = "en"
    response = await log_in(client, password="wrong password", code="123456")
    assert response.status_code == 401
    assert notice_of(response.text) == "User name, password or code is wrong."
    assert 'value="maria"' in response.text
    assert "set-cookie" not in response.headers or COOKIE not in response.headers["set-cookie"]
    client.headers["accept-language"] = "de"
    german = await log_in(client, password="wrong", code="12345")
    assert german.status_code == 422
    assert notice_of(german.text) == "Der Code aus der App hat 6 Ziffern."


async def test_login_without_the_form_token_is_refused_and_changes_nothing(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    secret = await add_user(runtime)
    assert secret
    await client.get("/login")  # the browser has the cookie, the attacker's form no field
    creds = {"username": "maria", "password": PASSWORD, "code": code_now(runtime, secret)}
    for data in (creds, {**creds, "csrf_token": "forged"}):
        refused = await client.post("/login", data=data)
        assert refused.status_code == 403
        assert "Formular ist abgelaufen" in refused.text
    # Without the cookie the right field of another browser does not help either.
    field = csrf_of((await client.get("/login")).text)
    client.cookies.clear()
    assert (await client.post("/login", data={**creds, "csrf_token": field})).status_code == 403
    assert await audit_events(runtime, "login") == []


def multipart(fields: dict[str, str], charset: str) -> tuple[bytes, dict[str, str]]:
    """A multipart form whose fields are bytes as written, in a charset it names."""
    parts = [
        f'--XX\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    ]
    body = ("".join(parts) + "--XX--\r\n").encode("ascii")
    return body, {"content-type": f"multipart/form-data; boundary=XX; charset={charset}"}


async def test_forms_in_a_charset_that_yields_no_utf8_text_are_refused(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """UTF-7 decodes "+2AA-" to a lone surrogate, which fails wherever text is
    encoded (argon2, token comparison, the database): a 400, not a 500."""
    await add_user(runtime)
    field = csrf_of((await client.get("/login")).text)
    for fields in (
        {"csrf_token": field, "username": "maria", "password": "x+2AA-xxxxxxx", "code": "123456"},
        {"csrf_token": field, "username": "ma+2AA-ria", "password": PASSWORD, "code": "123456"},
        {"csrf_token": "+2AA-", "username": "maria", "password": PASSWORD, "code": "123456"},
    ):
        body, headers = multipart(fields, "utf-7")
        refused = await client.post("/login", content=body, headers=headers)
        assert refused.status_code == 400 and refused.json()["error"] == "bad_form"
    assert await audit_events(runtime, "login") == []

    enter(client, await staff(runtime, "anna"))
    body, headers = multipart({"csrf_token": "+2AA-"}, "utf-7")
    assert (await client.post("/logout", content=body, headers=headers)).status_code == 400
    assert (await client.get("/desktops")).status_code == 200  # still logged in


async def test_login_with_a_recovery_code(runtime: Runtime, client: httpx.AsyncClient) -> None:
    from broker.auth import enrolment

    await add_user(runtime, enrol=False)
    codes = (await enrolment.admin_enrol(runtime, "maria", "test", replace=False)).recovery_codes
    response = await log_in(client, recovery_code=codes[0].upper())
    assert response.status_code == 303 and response.headers["location"] == "/desktops"
    assert await audit_events(runtime, "recovery_code_used") == [None]


async def test_logout_ends_the_session(runtime: Runtime, client: httpx.AsyncClient) -> None:
    enter(client, await staff(runtime, "maria"))
    response = await post_form(client, "/desktops", "/logout")
    assert response.status_code == 303 and response.headers["location"] == "/login"
    login = await client.get("/login")
    assert notice_of(login.text) == "Sie haben sich abgemeldet."
    # The notice is shown once.
    assert 'class="notice' not in (await client.get("/login")).text
    assert (await client.get("/desktops")).headers["location"] == "/login"
    async with runtime.db.read() as s:
        assert (await s.scalar(select(WebSession.revoked_at))) is not None


async def test_pages_need_a_login_and_a_timed_out_session_lands_on_login_with_a_notice(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    assert (await client.get("/")).headers["location"] == "/desktops"
    never = await client.get("/desktops")
    assert never.status_code == 303 and never.headers["location"] == "/login"

    enter(client, await staff(runtime, "maria"))
    assert (await client.get("/desktops")).status_code == 200
    clock.advance(runtime.settings.session_idle_timeout_s + 1)
    expired = await client.get("/desktops")
    assert expired.status_code == 303 and expired.headers["location"] == "/login?expired=1"
    assert f'{COOKIE}=""' in expired.headers["set-cookie"]  # the dead cookie goes
    login = await client.get("/login?expired=1")
    assert "Ihre Sitzung ist beendet: nach längerer Inaktivität" in notice_of(login.text)


async def test_after_logging_in_the_page_asked_for_opens(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """A bookmarked admin page, a link from an alert, a page whose session had
    timed out: the login led to My desktops, and the address was lost. The page
    asked for now opens after the login; another site never does."""
    secret = await add_user(runtime, "ada", role=Role.ADMIN)
    assert secret
    asked = await client.get("/admin/audit?event=login&user=maria")
    assert asked.status_code == 303
    assert asked.headers["location"] == (
        "/login?next=%2Fadmin%2Faudit%3Fevent%3Dlogin%26user%3Dmaria"
    )
    page = await client.get(asked.headers["location"])
    assert '<input type="hidden" name="next" value="/admin/audit?event=login&amp;user=maria">' in (
        page.text
    )
    # A wrong password keeps where to go on.
    wrong = await log_in(client, "ada", "wrong", next="/admin/audit?event=login&user=maria")
    assert wrong.status_code == 401 and 'name="next"' in wrong.text
    # So does the language switch of that page.
    switch = re.search(r'class="lang" href="([^"]+)"', wrong.text)
    assert switch is not None
    assert unescape(switch.group(1)) == (
        "/login?next=%2Fadmin%2Faudit%3Fevent%3Dlogin%26user%3Dmaria&lang=en"
    )
    done = await log_in(
        client, "ada", code=code_now(runtime, secret), next="/admin/audit?event=login&user=maria"
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/admin/audit?event=login&user=maria"
    assert (await client.get("/login?next=/admin/hosts")).headers["location"] == "/admin/hosts"


async def test_the_page_to_go_on_to_is_never_another_site(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    secret = await add_user(runtime, "maria")
    assert secret
    for target in ("//evil.example/x", "/\\evil.example", "https://evil.example/", "/api/v1/me"):
        page = await client.get("/login", params={"next": target})
        assert 'name="next"' not in page.text, target
    done = await log_in(client, code=code_now(runtime, secret), next="//evil.example/x")
    assert done.headers["location"] == "/desktops"
    # My desktops, where a login leads anyway, is not named.
    client.cookies.clear()
    assert (await client.get("/desktops")).headers["location"] == "/login"


# -- enrolment -------------------------------------------------------------------------------------


async def test_first_login_enrols_via_the_pages(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await add_user(runtime, enrol=False)
    started = await log_in(client)
    assert started.status_code == 303 and started.headers["location"] == "/enrol"
    assert "__Host-vdi_enrol=" in started.headers["set-cookie"]
    assert "HttpOnly" in started.headers["set-cookie"]

    enrol = await client.get("/enrol")
    assert enrol.status_code == 200
    assert_page_headers(enrol)
    assert_no_inline_code(enrol.text)
    assert "<svg" in enrol.text and 'role="img"' in enrol.text
    key = re.search(r'id="manual-key">([A-Z2-7 ]+)<', enrol.text)
    assert key
    secret = key.group(1).replace(" ", "")
    # A reload (a tablet coming back from the app) shows the same key.
    assert secret in (await client.get("/enrol")).text.replace(" ", "")

    token = csrf_of(enrol.text)
    wrong = await client.post("/enrol", data={"csrf_token": token, "code": "000000"})
    assert wrong.status_code == 422
    assert "Code ist nicht richtig" in notice_of(wrong.text)
    no_token = await client.post("/enrol", data={"code": code_now(runtime, secret)})
    assert no_token.status_code == 403

    # Typed as the app shows it, in two groups.
    done = await client.post(
        "/enrol", data={"csrf_token": token, "code": in_groups(code_now(runtime, secret))}
    )
    assert done.status_code == 200
    assert_page_headers(done)
    assert_no_inline_code(done.text)
    codes = re.findall(r"<li><code>([a-z2-9]{5}-[a-z2-9]{5})</code></li>", done.text)
    assert len(set(codes)) == 10
    assert 'class="lang"' not in done.text  # a language switch would lose the codes
    assert '__Host-vdi_enrol=""' in done.headers["set-cookie"]
    assert (await client.get("/enrol")).headers["location"] == "/login"

    clock.advance(30)
    logged_in = await log_in(client, code=code_now(runtime, secret))
    assert logged_in.headers["location"] == "/desktops"


async def test_a_new_key_on_request_and_an_expired_enrolment(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await add_user(runtime, enrol=False)
    await log_in(client)
    first = await client.get("/enrol")
    renewed = await client.post("/enrol/renew", data={"csrf_token": csrf_of(first.text)})
    assert renewed.headers["location"] == "/enrol"
    second = await client.get("/enrol")
    assert "neuer Schlüssel" in notice_of(second.text)
    pattern = r'id="manual-key">([A-Z2-7 ]+)<'
    assert re.findall(pattern, first.text) != re.findall(pattern, second.text)

    clock.advance(runtime.settings.enrolment_token_ttl_s + 1)
    gone = await client.get("/enrol")
    assert gone.headers["location"] == "/login"
    assert "Einrichtung ist abgelaufen" in notice_of((await client.get("/login")).text)


async def test_too_many_wrong_codes_at_set_up_are_said_as_such(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """Five wrong codes end the set-up. The login page said it had expired,
    which sends someone whose phone clock is off to try the same again."""
    await add_user(runtime, enrol=False)
    await log_in(client)
    token = csrf_of((await client.get("/enrol")).text)
    for _ in range(4):
        wrong = await client.post("/enrol", data={"csrf_token": token, "code": "000000"})
        assert wrong.status_code == 422
    ended = await client.post("/enrol", data={"csrf_token": token, "code": "000000"})
    assert ended.headers["location"] == "/login"
    notice = notice_of((await client.get("/login")).text)
    assert "Zu viele falsche Codes" in notice and "Uhrzeit Ihres Telefons" in notice
    assert "abgelaufen" not in notice


async def assert_enrolment_ended(runtime: Runtime, client: httpx.AsyncClient, cookie: str) -> None:
    """The next person at the browser, even with the old enrolment cookie kept,
    gets nothing to finish; the enrolment is ended, audited, and bound no app."""
    client.cookies.set("__Host-vdi_enrol", cookie)
    again = await client.get("/enrol")
    assert again.headers["location"] == "/login"
    async with runtime.db.read() as s:
        enrolment = (await s.scalars(select(Enrolment))).one()
        user = (await s.scalars(select(User))).one()
    assert enrolment.used_at is not None and enrolment.totp_secret is None
    assert user.totp_secret is None
    assert await audit_events(runtime, "totp_enrolment_cancelled") == [None]


async def test_cancelling_the_set_up_ends_the_enrolment(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """On a shared device the next person must not finish someone else's set-up
    with their own app: cancelling ends the enrolment, not only the page."""
    await add_user(runtime, enrol=False)
    await log_in(client)
    page = await client.get("/enrol")
    assert "Einrichtung abbrechen" in page.text
    cookie = client.cookies.get("__Host-vdi_enrol")
    assert cookie
    cancelled = await client.post("/enrol/cancel", data={"csrf_token": csrf_of(page.text)})
    assert cancelled.headers["location"] == "/login"
    assert '__Host-vdi_enrol=""' in cancelled.headers["set-cookie"]
    assert "Einrichtung wurde abgebrochen" in notice_of((await client.get("/login")).text)
    await assert_enrolment_ended(runtime, client, cookie)
    # Without the form's CSRF field nothing is cancelled.
    client.cookies.clear()
    await log_in(client)
    kept = await client.post("/enrol/cancel", data={})
    assert kept.status_code == 403
    assert (await client.get("/enrol")).status_code == 200


async def test_a_set_up_left_for_the_login_page_ends_there(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """Someone who leaves the set-up without cancelling it (a link, the back
    button) and is back at the login page must not leave it to the next person
    at the browser, who could otherwise open /enrol within the enrolment's life
    and bind their own app to the account."""
    await add_user(runtime, enrol=False)
    await log_in(client)
    assert (await client.get("/enrol")).status_code == 200
    cookie = client.cookies.get("__Host-vdi_enrol")
    assert cookie
    left = await client.get("/login")
    assert left.status_code == 200
    assert '__Host-vdi_enrol=""' in left.headers["set-cookie"]
    await assert_enrolment_ended(runtime, client, cookie)


# -- staff: desktops, connect, log off, refusals ------------------------------------------------


async def test_a_pool_with_nothing_usable_says_so(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """No host reports yet (or all are drained): not "0 von 0 frei"."""
    await add_pool(runtime)
    enter(client, await staff(runtime, "maria"))
    desktops = await client.get("/desktops")
    assert "Finanzen" in desktops.text
    assert "Zurzeit ist hier kein Desktop verfügbar." in desktops.text
    assert "von 0 frei" not in desktops.text


async def test_the_field_pool_tag_stands_apart_from_the_free_count(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """The templates trim whitespace around their tags: the tag once touched
    the text before it ("2 von 2 freiAußendienst" to a screen reader)."""
    await add_pool(runtime, "Bauhof", field=True)
    enter(client, await staff(runtime, "jan", work_mode=WorkMode.FIELD))
    desktops = await client.get("/desktops")
    assert re.search(r"verfügbar\.\s+<span class=\"tag\">Außendienst</span>", desktops.text)


async def test_start_a_desktop_connect_download_rdp_and_log_off(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await fleet_with_desktops(runtime, client)
    runtime.gateway_fingerprint = "SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    enter(client, await staff(runtime, "maria"))
    desktops = await client.get("/desktops")
    assert "Finanzen" in desktops.text and "2 von 2 frei" in desktops.text
    assert "Sie haben keine offene Sitzung." in desktops.text

    started = await start_desktop(client)
    assert started.status_code == 303
    path = started.headers["location"]
    assert re.fullmatch(r"/sessions/[0-9a-f-]{36}", path)
    connect = await client.get(path)
    assert connect.status_code == 200
    assert connect.headers["cache-control"] == "no-store"
    html = connect.text
    assert "vdi-connect http://127.0.0.1:8000 --user maria --pool Finanzen" in html
    assert re.search(r"ssh -N -L 127\.0\.0\.1:13389:127\.0\.0\.1:400\d\d -p 2222 maria@127", html)
    ticket = re.search(r'id="ticket">([A-Za-z0-9_-]{43,})<', html)
    assert ticket
    assert "SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG" in html
    # Each visit brings a fresh one-time ticket.
    assert ticket.group(1) not in (await client.get(path)).text

    rdp = await client.get(f"{path}/desktop.rdp")
    assert rdp.status_code == 200
    assert rdp.headers["content-type"].startswith("application/x-rdp")
    assert rdp.headers["content-disposition"] == 'attachment; filename="Finanzen.rdp"'
    lines = rdp.text.split("\r\n")
    assert lines[0] == "full address:s:127.0.0.1:13389"
    assert "redirectdrives:i:0" in lines and ticket.group(1) not in rdp.text

    # Back on My desktops: the open session, and the pool offers its details.
    desktops = await client.get("/desktops")
    assert "aktiv" in desktops.text and f'href="{path}"' in desktops.text

    ended = await post_form(client, path, f"{path}/end")
    assert ended.headers["location"] == "/desktops"
    after = await client.get("/desktops")
    assert notice_of(after.text) == "Die Sitzung im Pool Finanzen ist beendet."
    assert "Sie haben keine offene Sitzung." in after.text
    async with runtime.db.read() as s:
        assert await s.scalar(select(Session.end_reason)) == "user_logoff"
    assert (await client.get(f"{path}/desktop.rdp")).status_code == 404


async def test_a_pending_desktop_shows_starting_until_it_runs(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    agent = await fleet_with_desktops(runtime, client, 1, power=PowerState.STOPPED)
    enter(client, await staff(runtime, "maria"))
    path = (await start_desktop(client)).headers["location"]
    starting = await client.get(path)
    assert 'id="starting"' in starting.text and f'data-poll="/api/v1{path}"' in starting.text
    assert 'id="ticket"' not in starting.text
    # It says it updates itself: without script, too.
    refresh = '<noscript><meta http-equiv="refresh" content="5"></noscript>'
    assert refresh in starting.text.split("</head>")[0]
    await agent.obey()
    ready = await client.get(path)
    assert 'id="starting"' not in ready.text and 'id="ticket"' in ready.text
    assert "http-equiv" not in ready.text


async def test_a_refusal_is_shown_in_the_pages_language(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await fleet_with_desktops(runtime, client, max_sessions=1)
    enter(client, await staff(runtime, "felix"))
    await start_desktop(client)
    enter(client, await staff(runtime, "maria"))
    refused = await start_desktop(client)
    assert refused.headers["location"] == "/desktops"
    page = await client.get("/desktops")
    assert notice_of(page.text) == "Die einzige Lizenz des Pools Finanzen ist belegt."
    assert 'role="alert"' in page.text
    html = (await client.get("/desktops?lang=en")).text
    refused = await client.post(
        "/desktops/start", data={"csrf_token": csrf_of(html), "pool": "Finanzen"}
    )
    page = await client.get("/desktops")
    assert notice_of(page.text) == "The only licence of pool Finanzen is in use."
    unknown = await client.post("/desktops/start", data={"csrf_token": csrf_of(html), "pool": "X"})
    assert unknown.status_code == 303
    assert notice_of((await client.get("/desktops")).text) == "There is no pool X."


async def test_an_outside_hours_refusal_names_days_as_the_policies_page_does(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """The allowed hours in the refusal use the day names of the policies page
    ("Tue, Thu"), not the stored codes ("tue,thu"), in either language."""
    await fleet_with_desktops(runtime, client)
    enter(client, await staff(runtime, "maria"))  # on a Monday
    await policy_store.add_schedule(runtime, "user", "maria", "tue,thu", "07:00", "18:00", "ada")
    html = (await client.get("/desktops?lang=en")).text
    await client.post("/desktops/start", data={"csrf_token": csrf_of(html), "pool": "Finanzen"})
    assert notice_of((await client.get("/desktops")).text) == (
        "Your telework agreement does not allow access now. Allowed: Tue, Thu 07:00-18:00."
    )
    html = (await client.get("/desktops?lang=de")).text
    await client.post("/desktops/start", data={"csrf_token": csrf_of(html), "pool": "Finanzen"})
    assert notice_of((await client.get("/desktops")).text) == (
        "Ihre Telearbeitsvereinbarung erlaubt jetzt keinen Zugang. Erlaubt: Di, Do 07:00-18:00."
    )


async def test_sessions_of_others_are_not_found(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await fleet_with_desktops(runtime, client)
    enter(client, await staff(runtime, "felix"))
    path = (await start_desktop(client)).headers["location"]
    enter(client, await staff(runtime, "maria"))
    for url in (path, f"{path}/desktop.rdp", "/sessions/nope"):
        page = await client.get(url)
        assert page.status_code == 404 and "Nicht gefunden" in page.text
        assert_no_inline_code(page.text)
    ended = await post_form(client, "/desktops", f"{path}/end")
    assert ended.status_code == 303
    assert "Sitzung gibt es nicht" in notice_of((await client.get("/desktops")).text)
    async with runtime.db.read() as s:
        assert await s.scalar(select(Session.state)) == "active"


# -- admin -------------------------------------------------------------------------------------


async def test_staff_get_a_403_page_for_every_admin_page_and_form(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await fleet_with_desktops(runtime, client)
    enter(client, await staff(runtime, "maria"))
    for path in ADMIN_PAGES:
        page = await client.get(path)
        assert page.status_code == 403, path
        assert "Kein Zugriff" in page.text
        assert_page_headers(page)
        assert_no_inline_code(page.text)
    for action in ("drain", "maintenance"):
        refused = await post_form(
            client, "/desktops", f"/admin/hosts/{action}", {"host": "vhost01"}
        )
        assert refused.status_code == 403
    async with runtime.db.read() as s:
        assert await s.scalar(select(Host.state)) == "active"
    # Staff see no admin links.
    assert "/admin/hosts" not in (await client.get("/desktops")).text


async def test_a_form_without_the_session_token_is_refused(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await fleet_with_desktops(runtime, client)
    enter(client, await staff(runtime, "ada", role=Role.ADMIN))
    for data in ({"host": "vhost01"}, {"host": "vhost01", "csrf_token": "x" * 64}):
        refused = await client.post("/admin/hosts/drain", data=data)
        assert refused.status_code == 403
        assert "Formular ist abgelaufen" in refused.text
    async with runtime.db.read() as s:
        assert await s.scalar(select(Host.state)) == "active"
    assert await audit_events(runtime, "host_drained") == []


async def test_admin_drains_and_activates_a_host(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await fleet_with_desktops(runtime, client)
    enter(client, await staff(runtime, "ada", role=Role.ADMIN))
    hosts = await client.get("/admin/hosts")
    assert "vhost01" in hosts.text and "erreichbar" in hosts.text and "vor 0 s" in hosts.text
    drained = await post_form(client, "/admin/hosts", "/admin/hosts/drain", {"host": "vhost01"})
    assert drained.headers["location"] == "/admin/hosts"
    page = await client.get("/admin/hosts")
    assert "Host vhost01 wird geleert" in notice_of(page.text)
    assert "host-draining" in page.text and "/admin/hosts/activate" in page.text
    async with runtime.db.read() as s:
        assert await s.scalar(select(Host.state)) == HostState.DRAINING
    await post_form(client, "/admin/hosts", "/admin/hosts/activate", {"host": "vhost01"})
    async with runtime.db.read() as s:
        assert await s.scalar(select(Host.state)) == HostState.ACTIVE
    missing = await post_form(client, "/admin/hosts", "/admin/hosts/drain", {"host": "nope"})
    assert missing.status_code == 303
    assert notice_of((await client.get("/admin/hosts")).text) == "Das gibt es nicht (mehr)."
    assert await audit_events(runtime, "host_drained") == [None]


async def test_admin_puts_a_host_into_maintenance_as_the_api_can(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """The API and the CLI put a host into maintenance (no sessions at all, no
    alert while it is silent); the hosts page offered only drain and activate,
    so a host about to be rebooted raised VdiHostNotReporting."""
    await fleet_with_desktops(runtime, client)
    enter(client, await staff(runtime, "ada", role=Role.ADMIN))
    assert 'action="/admin/hosts/maintenance"' in (await client.get("/admin/hosts")).text
    done = await post_form(client, "/admin/hosts", "/admin/hosts/maintenance", {"host": "vhost01"})
    assert done.headers["location"] == "/admin/hosts"
    page = await client.get("/admin/hosts")
    assert notice_of(page.text).startswith("Host vhost01 ist in Wartung")
    assert "host-maintenance" in page.text and "/admin/hosts/activate" in page.text
    assert 'action="/admin/hosts/maintenance"' not in page.text
    async with runtime.db.read() as s:
        assert await s.scalar(select(Host.state)) == HostState.MAINTENANCE
    assert await audit_events(runtime, "host_maintenance") == [None]
    assert 'value="host_maintenance"' in (await client.get("/admin/audit")).text


async def test_admin_pools_and_sessions_pages_and_ending_a_session(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await fleet_with_desktops(runtime, client, max_sessions=4)
    enter(client, await staff(runtime, "felix"))
    await start_desktop(client)
    enter(client, await staff(runtime, "ada", role=Role.ADMIN))
    pools = await client.get("/admin/pools?lang=en")
    row = re.search(ROW_HEADER.format("Finanzen") + "(.*?)</tr>", pools.text, re.S)
    assert row
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    assert cells[1:4] == ["4", "1", "2"]  # licences, in use, usable
    assert "50 %" in cells[5]
    assert ">Out of service<" in pools.text and cells[7] == "0"  # every console answers
    sessions = await client.get("/admin/sessions")
    assert "felix" in sessions.text and "telework" in sessions.text  # English: remembered
    async with runtime.db.read() as s:
        sid = await s.scalar(select(Session.id))
    await post_form(client, "/admin/sessions", "/admin/sessions/end", {"session": sid})
    page = await client.get("/admin/sessions")
    assert notice_of(page.text) == "The session of felix in pool Finanzen has ended."
    async with runtime.db.read() as s:
        assert await s.scalar(select(Session.end_reason)) == "admin_end"


async def test_admin_pools_page_names_entitled_users(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """A pool open to single users only is not open to all: the page said "all"
    for it, as it looked at departments alone."""
    await add_pool(runtime, "Bauakten", departments=["Bauamt"])
    await add_pool(runtime, "Offen")
    await add_user(runtime, "maria")
    await pool_service.entitle(runtime, "Bauakten", "user", "maria", "test")
    await pool_service.revoke(runtime, "Bauakten", "department", "Bauamt", "test")
    enter(client, await staff(runtime, "ada", role=Role.ADMIN))

    def entitled(page: httpx.Response, pool: str) -> str:
        row = re.search(ROW_HEADER.format(pool) + "(.*?)</tr>", page.text, re.S)
        assert row, pool
        return str(re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)[-1])

    for language, everybody, users in (("en", "all", "users"), ("de", "alle", "Benutzer")):
        page = await client.get(f"/admin/pools?lang={language}")
        assert entitled(page, "Offen") == everybody
        assert entitled(page, "Bauakten") == f"{users}: maria"


async def test_admin_locks_unlocks_and_resets_totp(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await add_user(runtime, "maria")
    await add_user(runtime, "max", department="Bauhof")
    enter(client, await staff(runtime, "ada", role=Role.ADMIN))
    found = await client.get("/admin/users?q=bau")
    assert "max" in found.text and ">maria<" not in found.text
    assert "1 von 1 Benutzern angezeigt." in found.text
    locked = await post_form(
        client, "/admin/users?q=bau", "/admin/users/lock", {"user": "max", "q": "bau"}
    )
    assert locked.headers["location"] == "/admin/users?q=bau"
    page = await client.get("/admin/users?q=bau")
    assert notice_of(page.text) == (
        "max ist gesperrt und überall abgemeldet; offene Desktop-Sitzungen sind beendet."
    )
    assert "gesperrt" in page.text and "/admin/users/unlock" in page.text
    # A search longer than any name goes no further than one could be long.
    long = await post_form(
        client, "/admin/users", "/admin/users/unlock", {"user": "max", "q": "b" * 100_000}
    )
    assert long.headers["location"] == "/admin/users?q=" + "b" * 64
    await post_form(client, "/admin/users", "/admin/users/unlock", {"user": "max"})
    await post_form(client, "/admin/users", "/admin/users/reset-totp", {"user": "maria"})
    async with runtime.db.read() as s:
        users = {u.name: u for u in (await s.scalars(select(User))).all()}
    assert not users["max"].disabled
    assert users["maria"].totp_secret is None and users["max"].totp_secret is not None


async def test_an_account_locked_out_by_failed_logins_can_still_be_locked_for_good(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Failed logins lock an account for a while. The page showed it as "gesperrt"
    with only "Entsperren": an administrator who saw an account under attack
    could not lock it, and the lockout ended on its own."""
    await add_user(runtime, "max", department="Bauhof")
    until = clock.now() + dt.timedelta(minutes=15)
    async with runtime.db.write() as s:
        await s.execute(
            update(User).where(User.name == "max").values(failed_logins=5, locked_until=until)
        )
    enter(client, await staff(runtime, "ada", role=Role.ADMIN))
    page = (await client.get("/admin/users?q=max")).text
    assert "vorübergehend gesperrt" in page and "/admin/users/unlock" in page
    assert 'action="/admin/users/lock"' in page
    await post_form(client, "/admin/users", "/admin/users/lock", {"user": "max"})
    async with runtime.db.read() as s:
        max_ = await s.scalar(select(User).where(User.name == "max"))
    assert max_ is not None and max_.disabled
    page = (await client.get("/admin/users?q=max")).text
    assert "vorübergehend" not in page and 'action="/admin/users/lock"' not in page


async def test_admin_policies_and_bad_input_changes_nothing(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    await fleet_with_desktops(runtime, client)
    await add_user(runtime, "maria", enrol=False)
    enter(client, await staff(runtime, "ada", role=Role.ADMIN))
    page = "/admin/policies"

    async def send(action: str, data: dict[str, object]) -> str:
        """The notice after the form: on the page it redirects to, or, refused, on
        the page shown again with the form."""
        response = await post_form(client, page, f"{page}/{action}", data)
        if response.status_code == 303:
            assert response.headers["location"] == page
            return notice_of((await client.get(page)).text)
        assert response.status_code in (404, 422)
        return notice_of(response.text)

    assert await send("caps", {"department": "Finanzen", "max_sessions": "3"}) == (
        "Die Obergrenze von Finanzen ist gespeichert."
    )
    assert await send("caps", {"department": "Bauhof", "percent": "50"}) == (
        "Die Obergrenze von Bauhof ist gespeichert."
    )
    assert "Bitte eine ganze Zahl" in await send(
        "caps", {"department": "Finanzen", "max_sessions": "drei"}
    )
    assert "nicht beides" in await send(
        "caps", {"department": "Finanzen", "max_sessions": "2", "percent": "10"}
    )
    # The field's name, not its label in the form ("oder Anteil ...").
    assert await send("caps", {"department": "Finanzen", "percent": "viel"}) == (
        "Anteil der Beschäftigten in %: Bitte eine Zahl von 0 bis 100 eingeben."
    )
    html = (await client.get(page)).text
    assert "3 Sitzungen" in html and "50 % der Beschäftigten" in html
    assert (
        await send("caps/remove", {"department": "Bauhof"}) == "Bauhof hat keine Obergrenze mehr."
    )

    added = await send(
        "schedules",
        {
            "scope": "user",
            "subject": "maria",
            "days": ["mon", "wed"],
            "start": "07:00",
            "end": "13:30",
        },
    )
    assert added == "Das Zeitfenster ist gespeichert."
    assert "Zeitfenster ist nicht gültig" in await send(
        "schedules", {"scope": "department", "subject": "Bauhof", "start": "07:00", "end": "9"}
    )
    html = (await client.get(page)).text
    assert "Mo, Mi" in html and "07:00–13:30" in html
    schedule_id = re.search(r'name="schedule" value="(\d+)"', html)
    assert schedule_id
    assert await send("schedules/remove", {"schedule": schedule_id.group(1)}) == (
        "Das Zeitfenster ist entfernt."
    )
    assert await send("schedules/remove", {"schedule": "999"}) == (
        "Dieses Zeitfenster gibt es nicht (mehr)."
    )
    assert await send("schedules/remove", {"schedule": str(10**20)}) == (
        "Telearbeitszeiten: Bitte eine ganze Zahl eingeben."
    )

    assert await send("reserve", {"pool": "Finanzen", "percent": "12,5"}) == (
        "Die Reserve von Finanzen ist gespeichert."
    )
    assert "Reserve ist ein Anteil" in await send("reserve", {"pool": "Finanzen", "percent": "100"})
    assert 'value="12.5"' in (await client.get(page)).text
    # A reserve the server takes comes back in bounds the browser accepts again
    # (a field whose value lies outside them blocks the form).
    assert await send("reserve", {"pool": "Finanzen", "percent": "99,99"}) == (
        "Die Reserve von Finanzen ist gespeichert."
    )
    field = re.search(r'<input id="reserve-1"[^>]*>', (await client.get(page)).text)
    assert field is not None
    bounds = dict(re.findall(r'(min|max|value)="([^"]*)"', field[0]))
    assert float(bounds["min"]) <= float(bounds["value"]) == 99.99 <= float(bounds["max"])

    assert await send("classes", {"name": "Krisenstab"}) == (
        "Krisenstab ist ein vorrangiger Aufgabenbereich."
    )
    assert await send("classes", {"name": "Krisenstab"}) == (
        "Krisenstab ist bereits ein vorrangiger Aufgabenbereich."
    )
    assert await send("classes/remove", {"name": "Krisenstab"}) == (
        "Krisenstab ist kein vorrangiger Aufgabenbereich mehr."
    )
    results = await audit_events(runtime, "policy_changed")
    assert sorted(results) == sorted(  # type: ignore[type-var]
        [
            "department_cap_set",
            "department_cap_set",
            "department_cap_removed",
            "schedule_added",
            "schedule_removed",
            "priority_class_added",
            "priority_class_removed",
        ]
    )


async def test_a_cap_share_is_written_as_the_pages_language_writes_numbers(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """A share typed as "12,5" shows as "12,5 %" on the German page and "12.5 %"
    on the English one, a whole one without a decimal place, and a small one is
    not rounded away ("0,25 %", not "0.2 %")."""
    enter(client, await staff(runtime, "ada", role=Role.ADMIN))
    page = "/admin/policies"
    for department, percent in (("Finanzen", "12,5"), ("Bauhof", "50"), ("Kasse", "0.25")):
        data = {"department": department, "percent": percent}
        assert (await post_form(client, page, f"{page}/caps", data)).status_code == 303
    german = (await client.get(page)).text
    assert "12,5 % der Beschäftigten" in german
    assert "50 % der Beschäftigten" in german
    assert "0,25 % der Beschäftigten" in german
    english = (await client.get(f"{page}?lang=en")).text
    assert "12.5 % of the staff" in english
    assert "50 % of the staff" in english
    assert "0.25 % of the staff" in english


async def test_an_english_page_speaks_of_percent_where_the_form_asks_for_percent(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """The API takes shares as fractions, the forms as percentages: "100" in the
    reserve field was answered with "from 0 to below 1 (0.1 = a tenth)"."""
    await fleet_with_desktops(runtime, client)
    enter(client, await staff(runtime, "ada", role=Role.ADMIN))
    page = "/admin/policies?lang=en"
    reserve = await post_form(
        client, page, "/admin/policies/reserve", {"pool": "Finanzen", "percent": "100"}
    )
    assert reserve.status_code == 422
    assert notice_of(reserve.text) == "The reserve is a share from 0 to below 100 %."
    cap = await post_form(client, page, "/admin/policies/caps", {"department": "X", "percent": "0"})
    assert cap.status_code == 422
    assert "100 % of the staff" in notice_of(cap.text)
    assert "0.5" not in notice_of(cap.text)
    assert await audit_events(runtime, "policy_changed") == []


async def test_a_schedule_notice_names_the_home_sessions_outside(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """As the CLI and the API do, the portal says how many home sessions a change
    of telework windows finds outside them, and when they end."""
    await fleet_with_desktops(runtime, client)
    assert (await ask(client, await staff(runtime, "maria"))).status_code == 201  # Monday
    enter(client, await staff(runtime, "ada", role=Role.ADMIN))
    page = "/admin/policies"
    window = {"scope": "department", "subject": "Finanzen", "start": "07:00", "end": "18:00"}
    response = await post_form(client, page, f"{page}/schedules", {**window, "days": ["tue"]})
    assert response.headers["location"] == page
    assert notice_of((await client.get(page)).text) == (
        "Das Zeitfenster ist gespeichert. 1 Telearbeitssitzung(en) liegen jetzt außerhalb "
        "ihrer Zeiten; sie enden 60 Minuten nach dem Ende ihres Zeitfensters oder nach "
        "dieser Änderung, je nachdem, was später ist."
    )
    await post_form(client, page, f"{page}/schedules", {**window, "days": ["mon"]})
    assert notice_of((await client.get(page)).text) == "Das Zeitfenster ist gespeichert."


async def test_the_language_switch_of_a_page_answering_a_form_leads_to_a_page(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """A page shown in answer to a form (POST) has no address to load again: the
    switch must not lead to the form's action, which answers GET with 405."""
    enter(client, await staff(runtime, "maria"))
    refused = await client.post("/desktops/start", data={"csrf_token": "wrong", "pool": "x"})
    assert refused.status_code == 403
    assert 'class="lang" href="/desktops?lang=en"' in refused.text
    assert (await client.get("/desktops?lang=en")).status_code == 200
    client.cookies.clear()
    login = await log_in(client, password="wrong")
    assert login.status_code == 401 and 'class="lang" href="/login?lang=en"' in login.text


async def test_a_wrong_recovery_code_keeps_its_field_open(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """The recovery code field folds away behind "No phone at hand?"; when the
    notice is about that field, the field shows."""
    await add_user(runtime)
    closed = await client.get("/login")
    assert '<details class="field">' in closed.text
    response = await log_in(client, recovery_code="abc")
    assert response.status_code == 422
    assert notice_of(response.text) == "Ein Wiederherstellungscode sieht so aus: abcde-fghjk."
    assert '<details class="field" open>' in response.text
    wrong = await log_in(client, recovery_code="abcde-fghjk")
    assert wrong.status_code == 401 and '<details class="field" open>' in wrong.text


async def test_a_refused_policy_form_comes_back_with_what_was_typed(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """A telework window without a weekday, a cap with a typo, a reserve too
    large: the page shows the refusal and the form as it was sent (422), nothing
    is stored, and the language switch leads to the policies page."""
    await fleet_with_desktops(runtime, client)
    await add_user(runtime, "maria", enrol=False)
    enter(client, await staff(runtime, "ada", role=Role.ADMIN))
    page = "/admin/policies"
    window = {"scope": "user", "subject": "maria", "start": "07:30", "end": "16:00"}
    response = await post_form(client, page, f"{page}/schedules", window)
    assert response.status_code == 422
    html = response.text
    assert "Zeitfenster ist nicht gültig" in notice_of(html)
    assert '<option value="user" selected>' in html
    assert 'id="schedule-subject" name="subject" type="text" maxlength="64" value="maria"' in html
    assert 'value="07:30"' in html and 'value="16:00"' in html
    assert 'href="/admin/policies?lang=en"' in html
    assert "Es gibt keine Telearbeitszeiten." in html

    days = {**window, "days": ["tue", "fri"], "start": "7"}
    html = (await post_form(client, page, f"{page}/schedules", days)).text
    assert 'value="tue" checked' in html and 'value="fri" checked' in html
    assert 'value="mon" checked' not in html

    cap = {"department": "Bauhof & Co", "max_sessions": "3"}
    html = (await post_form(client, page, f"{page}/caps", cap)).text
    assert "Ein Name hat 1 bis 64 Zeichen" in notice_of(html)
    assert 'value="Bauhof &amp; Co"' in html and 'name="max_sessions"' in html
    assert re.search(r'name="max_sessions"[^>]*value="3"', html)

    reserve = {"pool": "Finanzen", "percent": "100"}
    html = (await post_form(client, page, f"{page}/reserve", reserve)).text
    assert "Reserve ist ein Anteil" in notice_of(html)
    assert re.search(r'name="percent"[^>]*value="100"', html)

    html = (await post_form(client, page, f"{page}/classes", {"name": "-Krisenstab"})).text
    assert 'value="-Krisenstab"' in html
    assert await audit_events(runtime, "policy_changed") == []


async def test_an_administrator_cannot_lock_their_own_account(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """One click on their own row would shut the administrator out of the portal
    (only the CLI could let them in again): no button, and the form is refused."""
    await add_user(runtime, "maria", enrol=False)
    enter(client, await staff(runtime, "ada", role=Role.ADMIN))
    html = (await client.get("/admin/users")).text
    assert html.count('action="/admin/users/lock"') == 1  # maria's row only
    assert 'value="maria"' in html
    response = await post_form(client, "/admin/users", "/admin/users/lock", {"user": "ada"})
    assert response.headers["location"] == "/admin/users"
    page = await client.get("/admin/users")
    assert page.status_code == 200
    assert notice_of(page.text) == "Das eigene Konto können Sie nicht sperren."
    async with runtime.db.read() as s:
        ada = await s.scalar(select(User).where(User.name == "ada"))
    assert ada is not None and not ada.disabled
    assert await audit_events(runtime, "user_locked") == []


async def test_a_browser_gets_a_page_for_an_address_without_one(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """A typo in the address or a bookmarked /logout showed the API's JSON; a
    browser now gets the "not found" page, whose language switch stays on the
    portal. The API, probes and static files keep their answers."""
    html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    enter(client, await staff(runtime, "maria"))
    for path in ("/admin/hostss", "/logout", "//evil.example/x"):
        page = await client.get(path, headers=html)
        assert page.status_code == 404, path
        assert_page_headers(page)
        assert "<h1>Nicht gefunden</h1>" in page.text
        assert 'class="lang" href="/desktops?lang=en"' in page.text
        assert "Angemeldet als maria" in page.text
    client.cookies.clear()
    page = await client.get("/nope", headers=html)
    assert page.status_code == 404 and 'class="lang" href="/login?lang=en"' in page.text
    api = await client.get("/api/v1/nope", headers=html)
    assert api.status_code == 404 and api.json()["error"] == "not_found"
    assert (await client.get("/static/nope.css", headers=html)).status_code == 404
    plain = await client.get("/nope")
    assert plain.json()["error"] == "not_found"
    posted = await client.post("/admin/hosts", headers=html)
    assert posted.status_code == 405 and posted.json()["error"] == "method_not_allowed"


async def test_a_page_while_the_database_is_away_says_so_in_its_language(
    runtime: Runtime, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """During a PostgreSQL restart or fail-over a staff member loading My
    desktops got the API's JSON, in English. A page says it, in the page's
    language, with Retry-After; the API keeps its JSON."""
    enter(client, await staff(runtime, "maria"))

    async def away(*_: object) -> None:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("refused"))

    monkeypatch.setattr(session_service, "pools_for", away)
    page = await client.get("/desktops", headers={"Accept": "text/html"})
    assert page.status_code == 503 and page.headers["retry-after"] == "5"
    assert_page_headers(page)
    assert "<h1>Vorübergehend nicht erreichbar</h1>" in page.text
    english = await client.get("/desktops?lang=en")
    assert english.status_code == 503 and "<h1>Temporarily unavailable</h1>" in english.text
    api = await client.get("/api/v1/desktops")
    assert api.status_code == 503 and api.json()["error"] == "unavailable"


async def test_a_fault_on_a_page_is_a_page_in_its_language(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault of the broker while loading My desktops showed the API's JSON
    ("Something went wrong in the broker.") on a German page."""

    async def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(session_service, "pools_for", broken)
    app = create_app(runtime.settings, runtime=runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as client:
            enter(client, await staff(runtime, "maria"))
            page = await client.get("/desktops")
            assert page.status_code == 500
            assert_page_headers(page)
            assert "<h1>Ein Fehler ist aufgetreten</h1>" in page.text
            api = await client.get("/api/v1/desktops")
            assert api.status_code == 500 and api.json()["error"] == "internal"
            assert api.headers["x-frame-options"] == "DENY"


async def test_audit_page_filters_and_pages(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    async with runtime.db.write() as s:
        for i in range(60):
            await audit.record(
                s, clock.now() + dt.timedelta(minutes=i), "login", result="success",
                username=f"user{i:02d}",
            )  # fmt: skip
        await audit.record(s, clock.now(), "host_drained", actor="ada", detail={"host": "h<1>"})
    enter(client, await staff(runtime, "ada", role=Role.ADMIN))
    first = await client.get("/admin/audit?event=login")
    assert len(re.findall(ROW_HEADER.format("login"), first.text)) == 50
    assert "user59" in first.text and "user09" not in first.text
    older = re.search(r'href="(/admin/audit\?event=login&amp;before=\d+)"', first.text)
    assert older
    second = await client.get(older.group(1).replace("&amp;", "&"))
    assert len(re.findall(ROW_HEADER.format("login"), second.text)) == 10
    assert "user09" in second.text and "Neueste Einträge" in second.text

    drained = await client.get("/admin/audit?event=host_drained&user=&result=")
    assert "{&#34;host&#34;: &#34;h&lt;1&gt;&#34;}" in drained.text
    # 09:00:05 UTC is 10:00 in Berlin; the range is local time.
    ranged = await client.get(
        "/admin/audit?user=user01&since=2026-03-02T10:00&until=2026-03-02T10:05"
    )
    assert "user01" in ranged.text
    any_case = await client.get("/admin/audit?user=USER01")
    assert len(re.findall(ROW_HEADER.format("login"), any_case.text)) == 1
    outside = await client.get("/admin/audit?user=user01&since=2026-03-02T10:02")
    assert "Keine Einträge." in outside.text
    bad = await client.get("/admin/audit?since=yesterday")
    assert bad.status_code == 422
    assert notice_of(bad.text) == "Von: Bitte Datum und Uhrzeit angeben."
    # Midnight in Berlin on the first day of year 1 is still year 0 in UTC.
    too_early = await client.get("/admin/audit?since=0001-01-01T00:30")
    assert too_early.status_code == 422
    assert notice_of(too_early.text) == "Von: Bitte Datum und Uhrzeit angeben."
    for before in ("abc", str(2**63), "٣", "9" * 5000):  # ignored, not a 500
        assert (await client.get(f"/admin/audit?before={before}")).status_code == 200


async def test_revoked_sessions_and_locked_users_land_on_login(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    enter(client, await staff(runtime, "maria"))
    async with runtime.db.write() as s:
        await s.execute(update(User).values(disabled=True))
    response = await client.get("/desktops")
    assert response.headers["location"] == "/login?expired=1"
    # The notice does not blame inactivity alone: IT may have ended the session.
    login = await client.get("/login?expired=1")
    assert "weil sie anderswo beendet wurde" in notice_of(login.text)
