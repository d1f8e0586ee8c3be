"""The portal in headless Chromium (Debian's, driven by Playwright from PyPI)
against a real `vdi-broker serve` on plain http, with desktops reported by a
FakeAgent over the real report endpoint.

What a person does: enrol the authenticator on first login, log in with a code,
start a desktop, read the connect details, download the .rdp file, log off, log
out; an administrator drains a host and reads the audit log; a refusal in German
and in English; a login by keyboard alone; the idle timeout. Every page is
checked for its CSP header and for the absence of CSP violations. Screenshots of
the main pages go to test-artifacts/screenshots/ (the path is printed).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Page,
    Response,
    async_playwright,
    expect,
)
from playwright.async_api import Error as PlaywrightError
from sqlalchemy import select, update

from agent.protocol import PowerState
from broker.clock import SystemClock
from broker.config import load_settings
from broker.domain import Role
from broker.ports import free_port
from broker.runtime import Runtime, open_runtime
from broker.sessions import service
from broker.store.tables import User, WebSession
from tests.support.accounts import PASSWORD, add_user
from tests.support.fleet import FakeAgent, add_pool, new_web_session, reporting_host
from tests.support.portal import PAGE_CSP, assert_no_inline_code
from tests.support.processes import REPO, start_broker, stop
from tests.support.totp import oathtool_code

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
TABLET = {"width": 1024, "height": 768}
COOKIE = "vdi_session"  # plain http: no __Host- prefix


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, str]]:
    """A real broker; reports count as fresh for half an hour, so hosts stay up."""
    data = tmp_path_factory.mktemp("portal") / "data"
    db_url = f"sqlite+aiosqlite:///{data.parent / 'vdi.sqlite3'}"
    proc, base = start_broker(data, db_url, cookie_secure="false", report_interval="600")
    try:
        yield base, data, db_url
    finally:
        stop(proc)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rt(broker: tuple[str, Path, str]) -> AsyncIterator[Runtime]:
    """The test's own view of the broker's database and key file, to set things up."""
    _, data, db_url = broker
    settings = load_settings(None, data_dir=data, database_url=db_url, gateway_enabled=False)
    runtime = await open_runtime(settings, clock=SystemClock())
    try:
        yield runtime
    finally:
        await runtime.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def agents(broker: tuple[str, Path, str]) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP client the FakeAgents report with."""
    async with httpx.AsyncClient(base_url=broker[0]) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture(scope="module")
def screenshots(request: pytest.FixtureRequest) -> Iterator[Path]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield SCREENSHOTS
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\nportal screenshots: {SCREENSHOTS}")


class Watched:
    """A browser context whose pages are checked as they load: the page CSP on
    every portal page, no inline code, and no CSP violation in the console."""

    def __init__(self, context: BrowserContext, base: str) -> None:
        self.context, self.base = context, base
        self.violations: list[str] = []
        self.pages_checked = 0

    async def page(self) -> Page:
        page = await self.context.new_page()
        page.on("console", self._console)
        page.on("response", self._response)
        return page

    def _console(self, message: ConsoleMessage) -> None:
        text = message.text
        if "Content Security Policy" in text or "Refused to" in text:
            self.violations.append(text)

    async def _response(self, response: Response) -> None:
        headers = response.headers  # as received: no round trip that could come too late
        if not headers.get("content-type", "").startswith("text/html"):
            return
        assert headers["content-security-policy"] == PAGE_CSP
        assert headers["x-frame-options"] == "DENY"
        self.pages_checked += 1
        try:
            body = await response.text()
        except PlaywrightError:
            # The page was left before its body could be read (a busy machine);
            # the console check above and the HTTP tests still cover its markup.
            return
        assert_no_inline_code(body)

    async def log_in_as(self, rt: Runtime, name: str) -> None:
        """A session cookie as a login leaves it, without typing a code."""
        web = await new_web_session(rt, name)
        await self.context.add_cookies(
            [{"name": COOKIE, "value": web.cookie_value, "url": self.base}]
        )


@pytest_asyncio.fixture(loop_scope="module")
async def german(browser: Browser, broker: tuple[str, Path, str]) -> AsyncIterator[Watched]:
    async with _context(browser, broker[0], "de-DE") as watched:
        yield watched


@pytest_asyncio.fixture(loop_scope="module")
async def english(browser: Browser, broker: tuple[str, Path, str]) -> AsyncIterator[Watched]:
    async with _context(browser, broker[0], "en-GB") as watched:
        yield watched


class _context:
    def __init__(self, browser: Browser, base: str, locale: str) -> None:
        self.browser, self.base, self.locale = browser, base, locale

    async def __aenter__(self) -> Watched:
        context = await self.browser.new_context(
            base_url=self.base, locale=self.locale, viewport=TABLET, accept_downloads=True
        )
        self.watched = Watched(context, self.base)
        return self.watched

    async def __aexit__(self, *exc: object) -> None:
        await self.watched.context.close()
        assert self.watched.violations == [], self.watched.violations


async def fleet(
    rt: Runtime,
    agents: httpx.AsyncClient,
    label: str,
    *,
    desktops: int = 2,
    max_sessions: int = 10,
    power: PowerState = PowerState.RUNNING,
) -> FakeAgent:
    """A pool for department `label` and a host reporting its desktops."""
    await add_pool(rt, label, max_sessions=max_sessions, departments=[label])
    return await reporting_host(
        rt,
        agents,
        desktops,
        pool=label,
        name=f"host-{label.lower()}",
        power=power,
        prefix=f"{label.lower()}-",
    )


async def staff_of_new_fleet(
    rt: Runtime, agents: httpx.AsyncClient, department: str, person: str
) -> tuple[str, str]:
    """A fleet for a new department and a staff member of it, not yet enrolled:
    the department's and the person's names."""
    label = unique(department)
    await fleet(rt, agents, label)
    name = unique(person)
    await add_user(rt, name, department=label, enrol=False)
    return label, name


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(3)}"


async def log_in(page: Page, name: str, code: str = "", password: str = PASSWORD) -> None:
    await page.goto("/login")
    await page.get_by_label("Benutzername").fill(name)
    await page.get_by_label("Passwort").fill(password)
    await page.get_by_label("Code aus der Authenticator-App").fill(code)
    await page.get_by_role("button", name="Anmelden").click()


def code_for(secret: str, *, steps_back: int = 0) -> str:
    return oathtool_code(secret, dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30 * steps_back))


async def wait_for_fresh_step() -> None:
    """Two codes must fall in one 30-s step (see the enrolment below): do not
    start in its last seconds."""
    into_step = time.time() % 30
    if into_step > 24:
        await asyncio.sleep(30.5 - into_step)


# -- the staff journey ------------------------------------------------------------------------


async def test_staff_journey_enrol_log_in_connect_and_log_off(
    rt: Runtime,
    broker: tuple[str, Path, str],
    agents: httpx.AsyncClient,
    german: Watched,
    screenshots: Path,
) -> None:
    label, name = await staff_of_new_fleet(rt, agents, "Kasse", "jonas")
    page = await german.page()

    await page.goto("/")
    await expect(page).to_have_url("/login")
    await expect(page.locator("html")).to_have_attribute("lang", "de")
    await page.screenshot(path=screenshots / "login.png", full_page=True)

    # First login: the right password without a code leads to the enrolment.
    await log_in(page, name)
    await expect(page).to_have_url("/enrol")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Authenticator-App einrichten")
    qr_code = page.get_by_role("img", name="QR-Code für die Authenticator-App")
    await expect(qr_code).to_be_visible()
    box = await qr_code.locator("svg").bounding_box()
    assert box is not None and box["width"] >= 200 and box["width"] == box["height"]
    await page.screenshot(path=screenshots / "enrolment.png", full_page=True)
    secret = (await page.locator("#manual-key").inner_text()).replace(" ", "")

    # Confirm with the previous step's code (still valid), so the current one
    # logs in right after without waiting for the next step.
    await wait_for_fresh_step()
    await page.get_by_label("Code aus der App (6 Ziffern)").fill(code_for(secret, steps_back=1))
    await page.get_by_role("button", name="Bestätigen").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Ihre Wiederherstellungscodes")
    codes = await page.get_by_role("list", name="Wiederherstellungscodes").locator("li").all()
    assert len(codes) == 10
    await page.screenshot(path=screenshots / "recovery-codes.png", full_page=True)

    await page.get_by_role("link", name="Weiter zur Anmeldung").click()
    code = code_for(secret)
    await log_in(page, name, f"{code[:3]} {code[3:]}")  # as the app shows it
    await expect(page).to_have_url("/desktops")
    card = page.locator("li.pool", has_text=label)
    await expect(card).to_contain_text("2 von 2 frei")
    await page.screenshot(path=screenshots / "my-desktops.png", full_page=True)

    await card.get_by_role("button", name="Desktop starten").click()
    await expect(page).to_have_url(f"/sessions/{await _session_id(rt, name)}")
    await expect(page.locator("#cmd-connect")).to_have_text(
        f"vdi-connect {broker[0]} --user {name} --pool {label}"
    )
    await expect(page.locator("#cmd-ssh")).to_contain_text(
        "ssh -N -L 127.0.0.1:13389:127.0.0.1:400"
    )
    ticket = await page.locator("#ticket").inner_text()
    assert len(ticket) >= 43
    await expect(page.locator("#fingerprint")).to_have_count(0)  # no gateway in this broker
    await page.screenshot(path=screenshots / "connect.png", full_page=True)

    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Remotedesktop-Datei herunterladen (.rdp)").click()
    download = await download_info.value
    assert download.suggested_filename == f"{label}.rdp"
    content = Path(await download.path()).read_bytes().decode("ascii")
    assert content.startswith("full address:s:127.0.0.1:13389\r\n")
    assert "redirectdrives:i:0" in content and ticket not in content

    page.once("dialog", lambda dialog: dialog.accept())  # "Sitzung ... beenden?"
    await page.get_by_role("button", name="Sitzung beenden").click()
    await expect(page).to_have_url("/desktops")
    await expect(page.get_by_role("status")).to_have_text(
        f"Die Sitzung im Pool {label} ist beendet."
    )
    await expect(page.get_by_text("Sie haben keine offene Sitzung.")).to_be_visible()

    await page.get_by_role("button", name="Abmelden").click()
    await expect(page).to_have_url("/login")
    await expect(page.get_by_role("status")).to_have_text("Sie haben sich abgemeldet.")
    assert german.pages_checked >= 8


async def user_named(rt: Runtime, name: str) -> User:
    async with rt.db.read() as s:
        user = await s.scalar(select(User).where(User.name == name))
    assert user is not None
    return user


async def _session_id(rt: Runtime, name: str) -> str:
    sessions = await service.sessions_of(rt, (await user_named(rt, name)).id)
    return sessions[0].id


async def test_a_starting_desktop_shows_starting_and_refreshes_by_itself(
    rt: Runtime, agents: httpx.AsyncClient, german: Watched
) -> None:
    label = unique("Bau")
    agent = await fleet(rt, agents, label, desktops=1, power=PowerState.STOPPED)
    name = unique("emma")
    await add_user(rt, name, department=label, enrol=False)
    await german.log_in_as(rt, name)
    page = await german.page()
    await page.goto("/desktops")
    await page.get_by_role("button", name="Desktop starten").click()
    await expect(page.locator("#starting")).to_contain_text("Ihr Desktop wird gestartet.")
    await expect(page.locator("#ticket")).to_have_count(0)
    await agent.obey()  # the agent starts the desktop and reports it running
    await expect(page.locator("#ticket")).to_be_visible(timeout=15_000)
    await expect(page.locator("#starting")).to_have_count(0)


async def test_without_script_a_starting_desktop_still_refreshes_by_itself(
    rt: Runtime, agents: httpx.AsyncClient, browser: Browser, broker: tuple[str, Path, str]
) -> None:
    """The page says it updates itself; with script switched off it does too
    (a refresh in <noscript>), and the copy buttons stay hidden."""
    label = unique("Hof")
    agent = await fleet(rt, agents, label, desktops=1, power=PowerState.STOPPED)
    name = unique("jonas")
    await add_user(rt, name, department=label, enrol=False)
    context = await browser.new_context(
        base_url=broker[0], locale="de-DE", viewport=TABLET, java_script_enabled=False
    )
    try:
        watched = Watched(context, broker[0])
        await watched.log_in_as(rt, name)
        page = await watched.page()
        await page.goto("/desktops")
        await page.get_by_role("button", name="Desktop starten").click()
        await expect(page.locator("#starting")).to_contain_text("Ihr Desktop wird gestartet.")
        await agent.obey()
        await expect(page.locator("#ticket")).to_be_visible(timeout=20_000)
        await expect(page.get_by_role("button", name="Kopieren")).to_have_count(0)
        assert watched.violations == []
    finally:
        await context.close()


async def test_each_copy_button_says_what_it_copies(
    rt: Runtime, agents: httpx.AsyncClient, german: Watched, broker: tuple[str, Path, str]
) -> None:
    """Three buttons were all just "Kopieren" to a screen reader, with nothing
    saying which of the two commands or the ticket each one copies."""
    _, name = await staff_of_new_fleet(rt, agents, "Kita", "ben")
    await german.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=broker[0])
    await german.log_in_as(rt, name)
    page = await german.page()
    await page.goto("/desktops")
    await page.get_by_role("button", name="Desktop starten").click()
    ticket = await page.locator("#ticket").inner_text()
    for what in ("Befehl für vdi-connect", "SSH-Befehl", "Einmal-Ticket"):
        await expect(
            page.get_by_role("button", name=f"Kopieren {what}", exact=True)
        ).to_be_visible()
    button = page.get_by_role("button", name="Kopieren Einmal-Ticket", exact=True)
    await button.click()
    for _ in range(50):
        if await page.evaluate("navigator.clipboard.readText()") == ticket:
            break
        await asyncio.sleep(0.1)
    assert await page.evaluate("navigator.clipboard.readText()") == ticket
    # Its word comes back after "Kopiert", and the hidden words stay hidden.
    await asyncio.sleep(2.5)
    await expect(button.locator(".label")).to_have_text("Kopieren")
    await expect(button.locator(".vh")).to_have_text(" Einmal-Ticket")
    await expect(button).to_have_accessible_name("Kopieren Einmal-Ticket")


async def _asked(questions: list[str], count: int) -> None:
    """Wait until the browser has asked `count` questions (a dismissed one loads
    no page to wait for)."""
    for _ in range(100):
        if len(questions) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"asked {questions}, expected {count} questions")


async def test_ending_a_session_or_locking_an_account_asks_first(
    rt: Runtime, agents: httpx.AsyncClient, german: Watched
) -> None:
    """Ending a session resets a floating desktop, and "Sitzung beenden" sits
    right under "Verbindungsdaten" on a tablet: one stray tap lost unsaved work.
    Such a button now asks; "Abbrechen" keeps everything as it was."""
    label, name = await staff_of_new_fleet(rt, agents, "Amt", "lena")
    await german.log_in_as(rt, name)
    page = await german.page()
    await page.goto("/desktops")
    await page.get_by_role("button", name="Desktop starten").click()
    await expect(page.locator("#ticket")).to_be_visible()
    session_id = await _session_id(rt, name)
    await page.goto("/desktops")

    asked: list[str] = []

    async def answer(dialog: Dialog, yes: bool) -> None:
        asked.append(dialog.message)
        await (dialog.accept() if yes else dialog.dismiss())

    page.once("dialog", lambda dialog: answer(dialog, yes=False))
    await page.get_by_role("button", name=f"Sitzung beenden {label}").click()
    await _asked(asked, 1)
    assert asked[0].startswith(f"Die Sitzung im Pool {label} beenden?")
    await expect(page).to_have_url("/desktops")
    session = await service.get_session(rt, await user_named(rt, name), session_id, admin=False)
    assert session.session.state == "active"

    page.once("dialog", lambda dialog: answer(dialog, yes=True))
    await page.get_by_role("button", name=f"Sitzung beenden {label}").click()
    await expect(page.get_by_role("status")).to_have_text(
        f"Die Sitzung im Pool {label} ist beendet."
    )

    # An administrator locking an account is asked too.
    admin = unique("ida")
    await add_user(rt, admin, role=Role.ADMIN, enrol=False)
    await german.log_in_as(rt, admin)
    await page.goto(f"/admin/users?q={name}")
    page.once("dialog", lambda dialog: answer(dialog, yes=False))
    await page.get_by_role("button", name=f"Sperren {name}").click()
    await _asked(asked, 3)
    assert asked[2].startswith(f"{name} sperren?")
    assert not (await user_named(rt, name)).disabled


# -- admin ----------------------------------------------------------------------------------------


async def test_admin_drains_a_host_and_finds_it_in_the_audit_log(
    rt: Runtime, agents: httpx.AsyncClient, german: Watched, screenshots: Path
) -> None:
    label = unique("Amt")
    await fleet(rt, agents, label)
    host = f"host-{label.lower()}"
    name = unique("ada")
    secret = await add_user(rt, name, department="IT", role=Role.ADMIN)
    assert secret
    page = await german.page()
    await log_in(page, name, code_for(secret))
    await expect(page).to_have_url("/desktops")
    await page.get_by_role("navigation").get_by_role("link", name="Hosts").click()
    row = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name=host))
    await expect(row).to_contain_text("erreichbar")
    await expect(row).to_contain_text("aktiv")
    await page.screenshot(path=screenshots / "admin-hosts.png", full_page=True)

    await row.get_by_role("button", name="Leeren").click()
    await expect(page.get_by_role("status")).to_contain_text(f"Host {host} wird geleert")
    await expect(row).to_contain_text("wird geleert")
    await expect(row.get_by_role("button", name="Aktivieren")).to_be_visible()
    # The drained host's pool has no usable places now.
    await page.get_by_role("link", name="Pools").click()
    pool_row = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name=label))
    await expect(pool_row.locator("td").nth(3)).to_have_text("0")  # usable

    await page.get_by_role("link", name="Protokoll").click()
    await page.get_by_label("Ereignis").fill("host_drained")
    await page.get_by_role("button", name="Filtern").click()
    await expect(page).to_have_url("/admin/audit?event=host_drained&user=&result=&since=&until=")
    entry = page.get_by_role("row").filter(has_text=host)
    await expect(entry).to_contain_text(name)
    await page.screenshot(path=screenshots / "admin-audit.png", full_page=True)

    await page.get_by_role("link", name="Hosts").click()
    await row.get_by_role("button", name="Aktivieren").click()
    await expect(row).to_contain_text("aktiv")


async def test_staff_see_a_403_page_and_a_form_without_token_is_refused(
    rt: Runtime, agents: httpx.AsyncClient, german: Watched
) -> None:
    label, name = await staff_of_new_fleet(rt, agents, "Ord", "tom")
    await german.log_in_as(rt, name)
    page = await german.page()
    response = await page.goto("/admin/hosts")
    assert response is not None and response.status == 403
    await expect(page.get_by_role("heading", level=1)).to_have_text("Kein Zugriff")
    # The browser's own cookies, but no token: what a forged cross-site form sends.
    forged = await page.request.post("/desktops/start", form={"pool": label})
    assert forged.status == 403
    assert "Formular ist abgelaufen" in await forged.text()
    await page.goto("/desktops")
    await expect(page.get_by_text("Sie haben keine offene Sitzung.")).to_be_visible()


# -- refusals and languages ----------------------------------------------------------------------


async def test_a_refusal_shows_its_message_in_german_and_in_english(
    rt: Runtime, agents: httpx.AsyncClient, german: Watched
) -> None:
    label = unique("Lizenz")
    await fleet(rt, agents, label, max_sessions=1)
    holder, name = unique("ida"), unique("ben")
    await add_user(rt, holder, department=label, enrol=False)
    await add_user(rt, name, department=label, enrol=False)
    first = await user_named(rt, holder)
    await service.request_session(rt, first, label, None, "de")  # the one licence

    await german.log_in_as(rt, name)
    page = await german.page()
    await page.goto("/desktops")
    await page.get_by_role("button", name="Desktop starten").click()
    await expect(page.get_by_role("alert")).to_have_text(
        f"Die einzige Lizenz des Pools {label} ist belegt."
    )
    await page.get_by_role("link", name="English").click()
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await page.get_by_role("button", name="Start desktop").click()
    await expect(page.get_by_role("alert")).to_have_text(
        f"The only licence of pool {label} is in use."
    )
    # The choice is remembered on the next page.
    await page.goto("/desktops")
    await expect(page.get_by_role("heading", level=1)).to_have_text("My desktops")


async def test_english_from_the_browser_and_german_by_the_switch(english: Watched) -> None:
    page = await english.page()
    await page.goto("/login")
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Log in")
    await expect(page.get_by_label("User name")).to_be_visible()
    await page.get_by_role("link", name="Deutsch").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Anmeldung")
    await page.goto("/login")
    await expect(page.locator("html")).to_have_attribute("lang", "de")


# -- keyboard, timeout --------------------------------------------------------------------------


async def _focused(page: Page) -> str:
    return str(
        await page.evaluate(
            "() => { const e = document.activeElement;"
            " return e.id || e.getAttribute('class') || e.tagName.toLowerCase(); }"
        )
    )


async def test_keyboard_only_login(rt: Runtime, german: Watched) -> None:
    name = unique("kim")
    secret = await add_user(rt, name, department="Bürgerbüro")
    assert secret
    page = await german.page()
    await page.goto("/login")
    order = []
    for _ in range(8):
        await page.keyboard.press("Tab")
        order.append(await _focused(page))
    # Skip link first, then the header, then the form top to bottom.
    assert order == ["skip", "brand", "lang", "username", "password", "code", "summary", "button"]
    # The focus is visible: an outline on the focused control.
    outline = await page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"

    await page.reload()
    for _ in range(4):
        await page.keyboard.press("Tab")
    assert await _focused(page) == "username"
    await page.keyboard.type(name)
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Tab")
    await page.keyboard.type(code_for(secret))
    await page.keyboard.press("Enter")
    await expect(page).to_have_url("/desktops")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Meine Desktops")


async def test_after_the_idle_timeout_the_login_page_says_why(rt: Runtime, german: Watched) -> None:
    name = unique("ute")
    await add_user(rt, name, department="Bürgerbüro", enrol=False)
    await german.log_in_as(rt, name)
    page = await german.page()
    await page.goto("/desktops")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Meine Desktops")
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=rt.settings.session_idle_timeout_s)
    async with rt.db.write() as s:
        await s.execute(update(WebSession).values(last_seen_at=long_ago))
    await page.reload()
    await expect(page).to_have_url("/login?expired=1")
    await expect(page.get_by_role("status")).to_have_text(
        "Ihre Sitzung ist beendet: nach längerer Inaktivität oder weil sie anderswo beendet "
        "wurde. Bitte melden Sie sich erneut an."
    )
    await page.goto("/login")
    await expect(page.get_by_role("status")).to_have_count(0)


# -- a phone ----------------------------------------------------------------------------------

PHONE = {"width": 390, "height": 844}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway_broker(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[str, Runtime]]:
    """A broker with its SSH gateway, so the connect page shows the host key."""
    data = tmp_path_factory.mktemp("portal-gateway") / "data"
    db_url = f"sqlite+aiosqlite:///{data.parent / 'vdi.sqlite3'}"
    proc, base = start_broker(
        data,
        db_url,
        cookie_secure="false",
        report_interval="600",
        gateway_enabled="true",
        gateway_port=str(free_port()),
    )
    try:
        settings = load_settings(None, data_dir=data, database_url=db_url, gateway_enabled=False)
        runtime = await open_runtime(settings, clock=SystemClock())
        try:
            yield base, runtime
        finally:
            await runtime.close()
    finally:
        stop(proc)


async def test_on_a_phone_the_connect_page_fits_and_the_session_can_be_ended(
    browser: Browser, gateway_broker: tuple[str, Runtime], screenshots: Path
) -> None:
    """A field worker's phone: the gateway's host key fingerprint (one long word)
    must wrap, else the page is wider than the screen, the phone zooms out and
    the buttons below it are hard to reach."""
    base, rt = gateway_broker
    label = unique("Forst")
    async with httpx.AsyncClient(base_url=base) as agents:
        await fleet(rt, agents, label)
    name = unique("felix")
    await add_user(rt, name, department=label)
    context = await browser.new_context(
        base_url=base, locale="de-DE", viewport=PHONE, is_mobile=True, has_touch=True
    )
    watched = Watched(context, base)
    try:
        await watched.log_in_as(rt, name)
        page = await watched.page()
        await page.goto("/desktops")
        await (
            page.locator("li.pool", has_text=label)
            .get_by_role("button", name="Desktop starten")
            .click()
        )
        await expect(page.locator("#fingerprint")).to_contain_text("SHA256:")
        await page.screenshot(path=screenshots / "connect-phone.png", full_page=True)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the connect page is {width} px wide on a phone"
        box = await page.locator("#fingerprint").bounding_box()
        assert box is not None and box["x"] + box["width"] <= PHONE["width"]

        page.once("dialog", lambda dialog: dialog.accept())
        await page.get_by_role("button", name="Sitzung beenden").click(timeout=5000)
        await expect(page).to_have_url("/desktops")
        await expect(page.get_by_text("Sie haben keine offene Sitzung.")).to_be_visible()
    finally:
        await context.close()
    assert watched.violations == [], watched.violations


async def test_on_a_phone_the_set_up_pages_fit_the_screen(
    browser: Browser, broker: tuple[str, Path, str], rt: Runtime
) -> None:
    """A first login on a phone: "Ihre Wiederherstellungscodes" is one word too
    long for the screen, and the page showing the codes (only once) was wider
    than the phone, which zoomed out."""
    name = unique("paula")
    await add_user(rt, name, department="Bauhof", enrol=False)
    context = await browser.new_context(
        base_url=broker[0], locale="de-DE", viewport=PHONE, is_mobile=True, has_touch=True
    )
    watched = Watched(context, broker[0])
    try:
        page = await watched.page()
        await log_in(page, name)
        await expect(page).to_have_url("/enrol")
        secret = (await page.locator("#manual-key").inner_text()).replace(" ", "")
        await page.get_by_label("Code aus der App (6 Ziffern)").fill(code_for(secret))
        await page.get_by_role("button", name="Bestätigen").click()
        heading = page.get_by_role("heading", level=1)
        await expect(heading).to_have_text("Ihre Wiederherstellungscodes")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the recovery codes page is {width} px wide on a phone"
        box = await heading.bounding_box()
        assert box is not None and box["x"] + box["width"] <= PHONE["width"]
    finally:
        await context.close()
    assert watched.violations == [], watched.violations
