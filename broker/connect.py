"""`vdi-connect URL --user NAME [--pool POOL]`: log in, get a desktop, open the
tunnel and start the desktop client.

1. Asks for password and code (or reads them from standard input with
   `--password-stdin`), logs in to the broker at URL. A user without an
   authenticator app is sent to the portal.
2. Asks for a desktop (POST /api/v1/sessions) and waits while it starts. A
   refusal comes in the language of the person's desktop (LC_ALL,
   LC_MESSAGES, LANG; on Windows the display language) when the broker
   speaks it, else in the broker's.
   vdi-connect's own words are German on a German desktop and English
   otherwise (broker.connect_texts).
3. Listens on 127.0.0.1 (a free port unless `--local-port`), connects to the
   broker's SSH gateway with the one-time ticket, checking the gateway's host
   key against the fingerprint the broker gave (a mismatch stops everything
   before the ticket is sent), and forwards every local connection to the
   desktop.
4. Starts xfreerdp/wlfreerdp (RDP, Linux), mstsc (Windows), `open rdp://`
   (macOS) or vncviewer (VNC) when found, else prints what to run.
   A gateway that cannot be reached or drops the first connection is tried
   again a few times (1, 2, 4 s apart) before vdi-connect gives up.
5. When the SSH connection drops (network change, sleep, a gateway restart) it
   fetches a fresh ticket for the same session and reconnects; the local port
   stays the same, so the desktop client can reconnect too. Ctrl-C disconnects
   cleanly; the desktop keeps running for a later reconnect.

Exit codes: 0 disconnected as asked (Ctrl-C, or the desktop client closed),
1 login failed or expired, 2 bad input, 3 enrolment needed first, 4 no desktop
(refused or did not start), 5 the session was ended, 6 gateway problem (host
key mismatch, unreachable), 7 the broker cannot be reached, 130 Ctrl-C at a
question (password, code, pool).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import email.utils
import errno
import getpass
import locale
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncssh
import httpx

from broker import __version__
from broker.auth.code_formats import RECOVERY_CODE_RE as RECOVERY_RE
from broker.auth.code_formats import TOTP_CODE_RE as TOTP_RE
from broker.auth.code_formats import ungrouped
from broker.cli_numbers import bounded_int
from broker.connect_texts import GERMAN
from broker.gateway import reasons
from broker.gateway.bridge import Bridge
from broker.gateway.hostkey import fingerprint
from broker.gateway.slowdown import MAX_AUTH_DELAY_S
from broker.i18n import SUPPORTED
from broker.numbers import ascii_int

API = "/api/v1"
POLL_S = 2.0
# Between reconnection attempts: doubling from 1 s up to this.
MAX_BACKOFF_S = 30.0
# A busy broker's Retry-After is honoured up to this.
MAX_RETRY_AFTER_S = 300.0
# The first connection is tried this often (waiting 1, 2, 4 s between) before
# vdi-connect gives up; once a tunnel was up, reconnecting never gives up.
FIRST_CONNECT_TRIES = 4
# A request that answers while the tunnel is up keeps the web login alive for
# reconnects (it would otherwise expire after the broker's idle timeout).
KEEPALIVE_S = 300.0
LOGOUT_TIMEOUT_S = 5.0
# Wrong answers to "which pool?" before giving up.
POOL_QUESTIONS = 3
SSH_KEEPALIVE_S = 15.0
SSH_KEEPALIVE_COUNT = 3
# The gateway must have answered within this: the TCP connection and the key
# exchange, up to showing its host key. Short, so a dead address fails fast.
CONNECT_TIMEOUT_S = 15.0
# Then the answer to the ticket may take this long: a gateway slows down logins
# after failures from the same address and name, by up to MAX_AUTH_DELAY_S
# (gateway_auth_delay_max_s may not exceed it), and a correct ticket must still
# get in behind such a delay.
LOGIN_WAIT_S = MAX_AUTH_DELAY_S + CONNECT_TIMEOUT_S

(
    OK,
    LOGIN_FAILED,
    BAD_INPUT,
    ENROL_FIRST,
    NO_DESKTOP,
    SESSION_ENDED,
    GATEWAY_PROBLEM,
    NO_BROKER,
) = range(8)
# Ctrl-C before anything was connected (at a question), as shells count SIGINT.
INTERRUPTED = 130


# The language of the person's desktop (desktop_language), set once by main():
# it is what vdi-connect speaks (German, else English) and asks the broker for.
_language: str | None = None


def use_language(language: str | None) -> None:
    global _language
    _language = language


def tr(text: str, **params: object) -> str:
    """`text` in the language vdi-connect speaks, its {placeholders} filled in.
    The English text is the key into broker.connect_texts.GERMAN."""
    if _language == "de":
        text = GERMAN.get(text, text)
    return text.format(**params) if params else text


class Stop(Exception):
    """Ends vdi-connect with a message in plain words and an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class BrokerBusy(Stop):
    """The broker (or the proxy in front of it) answered 5xx or 429: final while
    asking for a desktop, but only a pause while reconnecting a tunnel that was up.
    `retry_after` is the answer's Retry-After header, if any."""

    def __init__(self, message: str, code: int, retry_after: str | None) -> None:
        super().__init__(message, code)
        self.retry_after = retry_after


# -- pure helpers ------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientCommand:
    argv: list[str]
    # False where the command only hands over to an app and returns at once
    # (macOS `open`): its exit does not mean the user closed the desktop.
    waits: bool = True

    def __str__(self) -> str:
        return " ".join(self.argv)


def client_command(
    protocol: str,
    port: int,
    platform: str = sys.platform,
    which: Callable[[str], str | None] = shutil.which,
    wayland: bool = False,
) -> ClientCommand | None:
    """The desktop client to start for `protocol` on this platform, if one is found."""
    where = f"127.0.0.1:{port}"
    if protocol == "rdp":
        if platform == "win32":
            return ClientCommand(["mstsc", f"/v:{where}"]) if which("mstsc") else None
        if platform == "darwin":
            # Microsoft's Remote Desktop app registers the rdp:// scheme.
            return ClientCommand(["open", f"rdp://full%20address=s:{where}"], waits=False)
        names = ("wlfreerdp", "xfreerdp") if wayland else ("xfreerdp", "wlfreerdp")
        for name in names:
            if which(name):
                return ClientCommand([name, f"/v:{where}"])
        return None
    if protocol == "vnc":
        if platform == "darwin":
            return ClientCommand(["open", f"vnc://{where}"], waits=False)
        if which("vncviewer"):
            # TigerVNC, RealVNC and TightVNC read HOST::PORT as a port, not a display.
            return ClientCommand(["vncviewer", f"127.0.0.1::{port}"])
    return None


def manual_hint(protocol: str, port: int) -> str:
    """What to run when no desktop client was found."""
    if protocol == "vnc":
        return tr(
            "No VNC viewer found. Point your VNC viewer at 127.0.0.1 port {port}, e.g.:\n"
            "  vncviewer 127.0.0.1::{port}",
            port=port,
        )
    return tr(
        "No RDP client found. Connect your remote desktop client to 127.0.0.1:{port}, e.g.:\n"
        "  xfreerdp /v:127.0.0.1:{port}      (Linux)\n"
        "  mstsc /v:127.0.0.1:{port}         (Windows)",
        port=port,
    )


def second_factor(text: str) -> dict[str, str]:
    """The login body's second factor: a six-digit code or a recovery code."""
    value = ungrouped(text.strip())
    if TOTP_RE.fullmatch(value):
        return {"code": value}
    if RECOVERY_RE.fullmatch(value):
        return {"recovery_code": value}
    raise Stop(
        tr("The code from your authenticator app has six digits (or use a recovery code)."),
        BAD_INPUT,
    )


def choose_pool(
    wanted: str | None,
    desktops: dict[str, Any],
    ask: Callable[[list[str]], str] | None = None,
) -> str:
    """The pool to ask for: the one given, else the one with the user's open session,
    else the only one the user may use, else the one `ask` gets from the user."""
    if wanted:
        return wanted
    sessions = desktops.get("sessions") or []
    if len(sessions) == 1:
        return str(sessions[0]["pool"])
    pools = pool_names(desktops)
    if len(pools) == 1:
        return pools[0]
    if not pools:
        raise Stop(tr("There is no desktop pool you may use. Ask your IT department."), NO_DESKTOP)
    if ask is not None:
        return ask(pools)
    # The login has spent this code: a second run needs the next one.
    raise Stop(
        tr(
            "You may use several pools; run again with --pool and a new code: {pools}",
            pools=", ".join(pools),
        ),
        BAD_INPUT,
    )


def pool_names(desktops: dict[str, Any]) -> list[str]:
    """The pools a desktops answer says this user may use, by name."""
    return sorted(str(p["name"]) for p in desktops.get("pools") or [])


def picked_pool(pools: list[str], answer: str) -> str | None:
    """The pool an answer names: its number in the list or its name (any case)."""
    answer = answer.strip()
    number = ascii_int(answer)
    if number is not None and 1 <= number <= len(pools):
        return pools[number - 1]
    by_name = {p.casefold(): p for p in pools}
    return by_name.get(answer.casefold())


def ask_pool(pools: list[str], read: Callable[[str], str] = input) -> str:
    """Ask on the terminal which pool to use, by number or name."""
    say(tr("You may use several pools:"))
    for number, name in enumerate(pools, 1):
        say(f"  {number}) {name}")
    with ctrl_c_cancels():
        for _ in range(POOL_QUESTIONS):
            try:
                answer = read(tr("Which pool (1-{count})? ", count=len(pools)))
            except EOFError:
                break
            found = picked_pool(pools, answer)
            if found is not None:
                return found
            say(tr("Answer with a number from 1 to {count} or a pool's name.", count=len(pools)))
    raise Stop(tr("No pool chosen."), BAD_INPUT)


@contextlib.contextmanager
def ctrl_c_cancels() -> Iterator[None]:
    """Ctrl-C during a question on the terminal ends vdi-connect at once (after
    the logout, if logged in). The questions block the event loop, and
    asyncio.run's own Ctrl-C only cancels the main task at its next await: the
    first Ctrl-C went unseen, and vdi-connect quit only after the person had
    typed the answers. A SIGINT that is ignored (started in the background)
    stays ignored."""
    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, None):
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    except KeyboardInterrupt:
        print(file=sys.stderr)  # the prompt's line stays open while echo is off
        raise Stop(tr("Cancelled."), INTERRUPTED) from None
    finally:
        signal.signal(signal.SIGINT, previous)


def desktop_language(environ: Mapping[str, str], system_locale: str | None = None) -> str | None:
    """The language of the person's desktop, if the broker speaks it: as POSIX
    finds it (the first set of LC_ALL, LC_MESSAGES, LANG), else the system's
    display language `system_locale` ("de_DE"; Windows sets no LANG). None
    leaves the choice to the broker. "de_AT.UTF-8" is "de"; "C" and "POSIX"
    are nobody's language."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name)
        if value:
            return _spoken(value)
    return _spoken(system_locale) if system_locale else None


def _spoken(locale_name: str) -> str | None:
    language = locale_name.split(".")[0].split("@")[0].split("_")[0].lower()
    return language if language in SUPPORTED else None


def windows_display_locale() -> str | None:
    """On Windows, the display language the user chose, as a locale name
    ("de_DE"); None elsewhere."""
    if sys.platform == "win32":
        import ctypes

        return locale.windows_locale.get(ctypes.windll.kernel32.GetUserDefaultUILanguage())
    return None


def error_code(response: httpx.Response) -> str | None:
    """The broker's error code of an answer (`unknown_pool`), if it has one."""
    try:
        code = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    return code if isinstance(code, str) else None


def unknown_pool_text(pool: str, pools: Sequence[str]) -> str:
    """A pool the broker does not know, a typo most likely: with the pools this
    user may choose from, in the user's language."""
    text = tr("There is no pool {pool}.", pool=pool)
    if pools:
        text += " " + tr("Pools you may use: {pools}", pools=", ".join(pools))
    return text


def broker_reason(response: httpx.Response) -> str | None:
    """The broker's own words in an error answer; None for an answer without them
    (a proxy's HTML error page)."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    reason = body.get("message") or body.get("error")
    return str(reason) if reason else None


def error_text(response: httpx.Response) -> str:
    return broker_reason(response) or tr(
        "The broker answered {status}.", status=response.status_code
    )


def retry_delay(attempt: int, retry_after: str | None, now: dt.datetime | None = None) -> float:
    """Seconds to wait before reconnect attempt `attempt + 1`: what the answer's
    Retry-After asks (seconds or an HTTP date; at least 1 s, at most
    MAX_RETRY_AFTER_S), else the usual backoff."""
    wanted: float | None = None
    if retry_after:
        seconds = ascii_int(retry_after.strip())
        if seconds is not None:
            wanted = float(seconds)
        else:
            with contextlib.suppress(TypeError, ValueError, IndexError):
                when = email.utils.parsedate_to_datetime(retry_after)
                if when.tzinfo is not None:
                    wanted = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    if wanted is None:
        return backoff(attempt)
    return min(MAX_RETRY_AFTER_S, max(1.0, wanted))


def login_problem(response: httpx.Response, portal: str) -> Stop:
    """The words for a refused login (the broker never says which factor was wrong)."""
    status = response.status_code
    if status == 401:
        return Stop(tr("Wrong user name, password or code."), LOGIN_FAILED)
    if status == 403:
        return Stop(
            tr(
                "Your account needs an authenticator app first. Open the portal in a web "
                "browser, log in there and follow the steps: {portal}",
                portal=portal,
            ),
            ENROL_FIRST,
        )
    if status == 423:
        return Stop(
            tr("Your account is locked. Try again later or ask your IT department."),
            LOGIN_FAILED,
        )
    if status == 429:
        wait = response.headers.get("retry-after")
        if wait:
            text = tr("Too many login attempts; try again in {seconds} seconds.", seconds=wait)
        else:
            text = tr("Too many login attempts; try again later.")
        return Stop(text, LOGIN_FAILED)
    return Stop(tr("The login failed: {reason}", reason=error_text(response)), LOGIN_FAILED)


def secure_cookie(response: httpx.Response) -> bool:
    """Whether the answer sets a cookie marked Secure (sent back over HTTPS only)."""
    return any(
        part.strip().lower() == "secure"
        for header in response.headers.get_list("set-cookie")
        for part in header.split(";")[1:]
    )


def backoff(attempt: int) -> float:
    return float(min(MAX_BACKOFF_S, 2 ** min(attempt, 10)))


# -- the broker's HTTP API --------------------------------------------------------------


@dataclass(frozen=True)
class Details:
    """Where to connect, from a session answer's `connect` object."""

    session_id: str
    protocol: str
    gateway_host: str
    gateway_port: int
    user: str
    ticket: str
    desktop_address: str
    desktop_port: int
    fingerprint: str | None
    desktop: str | None


class Broker:
    def __init__(self, http: httpx.AsyncClient, portal: str) -> None:
        self.http = http
        self.portal = portal
        self.csrf = ""
        # The pools this user may use, as the last look at the desktops said.
        self.pools: list[str] = []

    async def login(self, user: str, password: str, factor: dict[str, str]) -> None:
        response = await self.http.post(
            f"{API}/auth/login", json={"username": user, "password": password, **factor}
        )
        if response.status_code != 200:
            raise login_problem(response, self.portal)
        if response.url.scheme == "http" and secure_cookie(response):
            # httpx, like a browser, never sends such a cookie back over plain
            # HTTP: every later request would be "not logged in".
            raise Stop(
                tr(
                    "The broker keeps logins for HTTPS only; use its https:// address "
                    "instead of {base}.",
                    base=str(response.url.copy_with(path="/", query=None)).rstrip("/"),
                ),
                BAD_INPUT,
            )
        self.csrf = response.json()["csrf_token"]

    async def logout(self) -> None:
        """Ends the web login, briefly: someone who pressed Ctrl-C wants to be gone,
        and a login nobody logs out of expires after the broker's idle timeout."""
        with contextlib.suppress(httpx.HTTPError):
            await self.http.post(
                f"{API}/auth/logout",
                headers={"X-CSRF-Token": self.csrf},
                timeout=LOGOUT_TIMEOUT_S,
            )

    async def alive(self) -> None:
        await self.http.get(f"{API}/me")

    async def desktops(self) -> dict[str, Any]:
        response = await self.http.get(f"{API}/desktops")
        self._check(response)
        body: dict[str, Any] = response.json()
        self.pools = pool_names(body)
        return body

    async def request(self, pool: str) -> dict[str, Any]:
        response = await self.http.post(
            f"{API}/sessions", json={"pool": pool}, headers={"X-CSRF-Token": self.csrf}
        )
        if response.status_code == 404 and error_code(response) == "unknown_pool":
            raise Stop(unknown_pool_text(pool, self.pools), BAD_INPUT)
        self._check(response)
        body: dict[str, Any] = response.json()
        return body

    async def session(self, session_id: str) -> dict[str, Any]:
        response = await self.http.get(f"{API}/sessions/{session_id}")
        self._check(response)
        body: dict[str, Any] = response.json()
        return body

    def _check(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 300:
            return
        if status == 401:
            raise Stop(tr("Your login has expired; run vdi-connect again."), LOGIN_FAILED)
        if status == 404:
            raise Stop(error_text(response), BAD_INPUT)
        reason = broker_reason(response)
        if status in (403, 409, 503) and reason:
            text = tr("No desktop for you right now: {reason}", reason=reason)
        elif reason:
            text = tr("The broker answered {status}: {reason}", status=status, reason=reason)
        else:
            text = tr("The broker answered {status}.", status=status)
        if status >= 500 or status == 429:
            raise BrokerBusy(text, NO_DESKTOP, response.headers.get("retry-after"))
        raise Stop(text, NO_DESKTOP)


def details(answer: dict[str, Any]) -> Details | None:
    """The connection details of a session answer; None while it is pending."""
    session = answer["session"]
    if session["state"] == "ended":
        raise Stop(ended_text(session), SESSION_ENDED)
    c = answer.get("connect")
    if not c:
        return None
    return Details(
        session_id=session["id"],
        protocol=c["protocol"],
        gateway_host=c["gateway_host"],
        gateway_port=int(c["gateway_port"]),
        user=c["user"],
        ticket=c["ticket"],
        desktop_address=c["desktop_address"],
        desktop_port=int(c["desktop_port"]),
        fingerprint=c.get("host_key_fingerprint"),
        desktop=session.get("desktop"),
    )


def ended_text(session: dict[str, Any]) -> str:
    """Why the session ended, in words; an end reason this version does not know
    is shown as the broker named it."""
    why = {
        "user_logoff": tr("you logged off"),
        "admin_end": tr("an administrator ended it"),
        "disconnect_timeout": tr("it stayed disconnected too long"),
        "idle_timeout": tr("it was idle too long"),
        "max_session_time": tr("it reached the longest time allowed"),
        "outside_schedule": tr("your agreed telework time is over"),
        "start_timeout": tr("the desktop did not start in time"),
        "host_lost": tr("the server of your desktop failed"),
        "desktop_lost": tr("your desktop is no longer there"),
        "user_locked": tr("your account was locked"),
    }
    reason = session.get("end_reason") or ""
    return tr("Your desktop session has ended ({why}).", why=why.get(reason, reason or tr("ended")))


# -- the SSH side ----------------------------------------------------------------------


class _PinnedHostKey(asyncssh.SSHClient):
    """Accepts exactly the gateway host key whose fingerprint the broker gave."""

    def __init__(self, expected: str) -> None:
        self.expected = expected
        self.seen: str | None = None
        self.shown = asyncio.Event()  # the key exchange got as far as the host key

    def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
        self.seen = fingerprint(key)
        self.shown.set()
        return self.seen == self.expected


async def open_ssh(d: Details) -> asyncssh.SSHClientConnection:
    if not d.fingerprint:
        raise Stop(
            tr("The broker did not say which host key its gateway has; not connecting."),
            GATEWAY_PROBLEM,
        )
    pinned = _PinnedHostKey(d.fingerprint)
    connecting = asyncio.ensure_future(
        asyncssh.create_connection(
            lambda: pinned,
            d.gateway_host,
            d.gateway_port,
            username=d.user,
            password=d.ticket,
            known_hosts=([], [], []),  # no file: only the pinned key is trusted
            client_keys=None,
            agent_path=None,
            preferred_auth="password",
            config=None,
            connect_timeout=CONNECT_TIMEOUT_S + LOGIN_WAIT_S,  # the sum, as a backstop
            keepalive_interval=SSH_KEEPALIVE_S,
            keepalive_count_max=SSH_KEEPALIVE_COUNT,
        )
    )
    try:
        conn, _ = await _in_time(connecting, pinned.shown)
    except asyncssh.HostKeyNotVerifiable:
        raise Stop(
            tr(
                "The gateway at {host}:{port} shows host key {seen}, but the broker said "
                "{expected}. Not connecting: someone may be intercepting the connection. "
                "Tell your IT department.",
                host=d.gateway_host,
                port=d.gateway_port,
                seen=pinned.seen,
                expected=d.fingerprint,
            ),
            GATEWAY_PROBLEM,
        ) from None
    conn_: asyncssh.SSHClientConnection = conn
    return conn_


async def _in_time(connecting: asyncio.Future[Any], shown: asyncio.Event) -> Any:
    """The result of `connecting`: CONNECT_TIMEOUT_S for the gateway to show its
    host key, then LOGIN_WAIT_S for it to let us in (asyncssh's one
    connect_timeout would cover both, cutting off a login the gateway delays)."""
    waiting = asyncio.ensure_future(shown.wait())
    try:
        await asyncio.wait(
            {connecting, waiting}, timeout=CONNECT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        waiting.cancel()
    if not connecting.done() and not shown.is_set():
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await connecting
        raise TimeoutError(tr("no answer within {seconds} s", seconds=f"{CONNECT_TIMEOUT_S:.0f}"))
    try:
        return await asyncio.wait_for(connecting, LOGIN_WAIT_S)
    except TimeoutError:
        raise TimeoutError(
            tr("no answer to the login within {seconds} s", seconds=f"{LOGIN_WAIT_S:.0f}")
        ) from None


class LocalForward:
    """127.0.0.1:port, forwarded to the desktop over whichever SSH connection is up.

    The listener outlives SSH connections, so a desktop client keeps its port
    across reconnects; a local connection made while the tunnel is down waits
    for it to come back.
    """

    def __init__(self, port: int) -> None:
        self.wanted_port = port
        self.port = 0
        self.target: tuple[str, int] = ("", 0)
        self._conn: asyncssh.SSHClientConnection | None = None
        self._up = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._bridges: set[Bridge] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(self._accept, "127.0.0.1", self.wanted_port)
        except OSError as exc:
            problem = str(exc)
            if exc.errno == errno.EADDRINUSE:
                problem = tr(
                    "another program uses it (is vdi-connect running already?); choose "
                    "another port or leave out --local-port"
                )
            raise Stop(
                tr(
                    "Cannot listen on 127.0.0.1:{port}: {problem}",
                    port=self.wanted_port,
                    problem=problem,
                ),
                BAD_INPUT,
            ) from None
        self.port = self._server.sockets[0].getsockname()[1]

    def use(self, conn: asyncssh.SSHClientConnection | None, target: tuple[str, int]) -> None:
        self._conn = conn
        self.target = target
        if conn is None:
            self._up.clear()
        else:
            self._up.set()

    def _accept(self) -> asyncio.Protocol:
        bridge = Bridge(self._bridges.discard)
        self._bridges.add(bridge)
        task = asyncio.get_running_loop().create_task(self._open(bridge))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return bridge.socket_protocol()

    async def _open(self, bridge: Bridge) -> None:
        try:
            await asyncio.wait_for(self._up.wait(), 60)
            assert self._conn is not None
            host, port = self.target
            await self._conn.create_connection(lambda: bridge, host, port)
        except (TimeoutError, asyncssh.Error, OSError) as exc:
            say(
                tr(
                    "Could not open a connection to the desktop: {problem}",
                    problem=channel_problem(exc),
                )
            )
            bridge.close()

    def drop_connections(self) -> None:
        for bridge in list(self._bridges):
            bridge.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop_connections()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()


# -- the flow ----------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, flush=True)


def check_url(url: str) -> None:
    """The broker's address must be http(s)://HOST: said before the questions,
    not after the password and code were typed (a missing https:// is the
    likely slip, and it is bad input, not a broker that cannot be reached)."""
    try:
        parsed: httpx.URL | None = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise Stop(
            tr(
                "The broker's address begins with https:// (for example "
                "https://vdi.example.org), not {url}.",
                url=url,
            ),
            BAD_INPUT,
        )


def check_code_option(code: str | None) -> None:
    """`--code` takes the authenticator app's code only: a recovery code there
    would show in the process list and the shell's history, and stay valid if
    the login failed for another reason."""
    if code is not None and RECOVERY_RE.fullmatch(code.strip()):
        raise Stop(
            tr(
                "--code takes the six-digit code only. Enter a recovery code when asked, or on "
                "standard input with --password-stdin: on the command line others could read it."
            ),
            BAD_INPUT,
        )


def read_secrets(args: argparse.Namespace) -> tuple[str, str]:
    check_code_option(args.code)
    with ctrl_c_cancels():
        return _read_secrets(args)


def _read_secrets(args: argparse.Namespace) -> tuple[str, str]:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        code = args.code or sys.stdin.readline().strip()
        if not password or not code:
            raise Stop(tr("Give the password and then the code on standard input."), BAD_INPUT)
        return password, code
    if not sys.stdin.isatty():
        raise Stop(tr("No terminal to ask for the password; use --password-stdin."), BAD_INPUT)
    password = getpass.getpass(tr("Password for {user}: ", user=args.user))
    code = args.code or getpass.getpass(tr("Code from your authenticator app: "))
    return password, code


async def wait_ready(broker: Broker, answer: dict[str, Any], wait_s: float) -> Details:
    """Details once the desktop is ready; waits while it starts."""
    found = details(answer)
    if found is not None:
        return found
    session_id = answer["session"]["id"]
    say(tr("Your desktop is starting; this can take a minute ..."))
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        await asyncio.sleep(POLL_S)
        found = details(await broker.session(session_id))
        if found is not None:
            return found
    raise Stop(
        tr("Your desktop did not start within {seconds} seconds.", seconds=f"{wait_s:.0f}"),
        NO_DESKTOP,
    )


async def fresh_details(broker: Broker, session_id: str) -> Details:
    """The session's connection details with a fresh one-time ticket."""
    d = details(await broker.session(session_id))
    if d is None:
        raise Stop(tr("Your desktop is not ready (it may be restarting)."), NO_DESKTOP)
    return d


def connection_problem(exc: BaseException) -> str:
    """What went wrong with a connection attempt, for the person to read, in
    their language where we know the kind: the gateway's reason for a pause on
    its side (its database is away) comes in English, and httpx names a
    timeout by its class."""
    # Only the gateway's own pause: another SSH server (or a proxy in between)
    # may refuse with this code for reasons of its own, which it names.
    if isinstance(exc, asyncssh.ServiceNotAvailable) and exc.reason == reasons.CANNOT_CHECK:
        return tr("the broker cannot check tickets right now")
    # httpx names these by class only ("ReadTimeout"), in English.
    if isinstance(exc, httpx.TimeoutException):
        return tr("the broker did not answer in time")
    said = os_problem(exc)
    if said is not None:
        return said
    # Also a broker that went away in mid-request (restarting): "ReadError".
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
        return tr("the broker cannot be reached")
    return str(exc) or type(exc).__name__


def os_problem(exc: BaseException) -> str | None:
    """The operating system's reason a connection failed, for the kinds people
    meet, in their language; the system's own words (English) follow in
    brackets for whoever helps them. None for other errors."""
    cause: BaseException | None = exc
    while cause is not None:
        said = _os_reason(cause)
        if said is not None:
            return said
        cause = cause.__cause__ or cause.__context__
    return None


def _os_reason(exc: BaseException) -> str | None:
    # asyncio's messages name the address rather than the reason (its
    # "Connect call failed" has errno 111), so the words come from the errno.
    if isinstance(exc, socket.gaierror):
        said = tr("the server's name is not known")
        return f"{said} ({exc.strerror})"
    if not isinstance(exc, OSError):
        return None
    if isinstance(exc, ConnectionRefusedError):
        said = tr("nothing answers at that address")
    elif exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        said = tr("the network does not reach that address")
    elif isinstance(exc, TimeoutError):
        return tr("the server does not answer")
    else:
        return None
    return f"{said} ({os.strerror(exc.errno)})" if exc.errno else said


def channel_problem(exc: BaseException) -> str:
    """Why a connection to the desktop could not be opened, for the person to
    read: the gateway's reasons they meet in their language (it speaks English),
    and the wait for a tunnel that was down (a TimeoutError says nothing)."""
    if isinstance(exc, asyncssh.ChannelOpenError):
        words = {
            reasons.DESKTOP_SILENT: tr("your desktop does not answer"),
            reasons.DESKTOP_GONE: tr(
                "your desktop's server no longer reports it; run vdi-connect again later"
            ),
            reasons.SESSION_ENDED: tr("your session has ended"),
            reasons.CANNOT_OPEN: tr("the broker cannot open your tunnel right now"),
        }
        return words.get(exc.reason, exc.reason)
    if isinstance(exc, TimeoutError):
        return tr("the connection to the gateway is not back yet")
    return connection_problem(exc)


async def connect_fresh(broker: Broker, session_id: str) -> tuple[Details, Any]:
    """A fresh ticket for the session, and an SSH connection with it."""
    d = await fresh_details(broker, session_id)
    return d, await open_ssh(d)


async def first_connect(broker: Broker, d: Details) -> tuple[Details, Any]:
    """The first SSH connection. A gateway that drops it or cannot be reached (its
    start-up limit, a restart, a load balancer switching over) is tried again a
    few times with backoff, each time with a fresh ticket. A host key mismatch
    stops at once (open_ssh raises Stop)."""
    attempt = 0
    while True:
        try:
            return d, await open_ssh(d)
        except (OSError, asyncssh.Error) as exc:
            attempt += 1
            problem = connection_problem(exc)
            if attempt >= FIRST_CONNECT_TRIES:
                raise Stop(
                    tr(
                        "Cannot reach the gateway at {host}:{port}: {problem}",
                        host=d.gateway_host,
                        port=d.gateway_port,
                        problem=problem,
                    ),
                    GATEWAY_PROBLEM,
                ) from None
            # An expired ticket (the desktop took long to start) needs no wait.
            if not isinstance(exc, asyncssh.PermissionDenied):
                delay = backoff(attempt - 1)
                say(
                    tr(
                        "The gateway did not let us in ({problem}); trying again in {seconds} s.",
                        problem=problem,
                        seconds=f"{delay:.0f}",
                    )
                )
                await asyncio.sleep(delay)
        d = await fresh_details(broker, d.session_id)


async def reconnect(broker: Broker, session_id: str) -> tuple[Details, Any]:
    """A new SSH connection for the session after a drop: never gives up on
    problems that pass (the network, the gateway, a broker or proxy answering
    5xx or 429, honouring Retry-After); only a final answer ends it (an expired
    login: exit 1, the session ended: exit 5)."""
    attempt = 0
    while True:
        try:
            return await connect_fresh(broker, session_id)
        except (OSError, asyncssh.Error, httpx.HTTPError, BrokerBusy) as exc:
            retry_after = exc.retry_after if isinstance(exc, BrokerBusy) else None
            delay = retry_delay(attempt, retry_after)
            say(
                tr(
                    "Reconnecting failed ({problem}); next try in {seconds} s.",
                    problem=connection_problem(exc),
                    seconds=f"{delay:.0f}",
                )
            )
            await asyncio.sleep(delay)
            attempt += 1


async def _keep_login_alive(broker: Broker) -> None:
    while True:
        await asyncio.sleep(KEEPALIVE_S)
        with contextlib.suppress(httpx.HTTPError):
            await broker.alive()


async def session_loop(
    broker: Broker,
    forward: LocalForward,
    d: Details,
    conn: Any,
    no_client: bool,
) -> int:
    """Keep the tunnel up until Ctrl-C, the desktop client closing or the session ending."""
    session_id = d.session_id
    client: asyncio.subprocess.Process | None = None
    command = client_command(
        d.protocol, forward.port, wayland=bool(os.environ.get("WAYLAND_DISPLAY"))
    )
    say(
        tr(
            "Tunnel open: 127.0.0.1:{port} -> desktop {desktop} ({protocol}).",
            port=forward.port,
            desktop=d.desktop or "",
            protocol=d.protocol,
        )
    )
    if no_client or command is None:
        if command is None:
            say(manual_hint(d.protocol, forward.port))
        else:
            say(tr("Connect your desktop client: {command}", command=command))
    else:
        say(tr("Starting {command} ...", command=command))
        client = await asyncio.create_subprocess_exec(*command.argv)
        if not command.waits:
            await client.wait()
            client = None
    say(tr("Press Ctrl-C to disconnect."))
    while True:
        closed = asyncio.ensure_future(conn.wait_closed())
        waiting: set[asyncio.Future[Any]] = {closed}
        if client is not None:
            waiting.add(asyncio.ensure_future(client.wait()))
        try:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in waiting:
                if not future.done():
                    future.cancel()
        if closed not in done:
            say(tr("The desktop client has closed; disconnecting."))
            conn.close()
            return OK
        forward.use(None, forward.target)
        forward.drop_connections()
        say(tr("The connection to the gateway was lost; reconnecting ..."))
        d, conn = await reconnect(broker, session_id)
        forward.use(conn, (d.desktop_address, d.desktop_port))
        say(tr("Reconnected. Your desktop client can connect again."))


async def run(args: argparse.Namespace) -> int:
    check_url(args.url)
    forward = LocalForward(args.local_port)
    # Before the questions: a local port that is taken must not cost a code, a
    # desktop and a licence (and a wait for the next code).
    await forward.start()
    try:
        return await _connect(args, forward)
    finally:
        await forward.close()


async def _connect(args: argparse.Namespace, forward: LocalForward) -> int:
    password, code = read_secrets(args)
    factor = second_factor(code)
    base = args.url.rstrip("/")
    verify: Any = args.ca_file or True
    headers = {"Accept-Language": _language} if _language else None
    async with httpx.AsyncClient(base_url=base, verify=verify, timeout=30, headers=headers) as http:
        broker = Broker(http, f"{base}/")
        say(tr("Logging in to {base} as {user} ...", base=base, user=args.user))
        await broker.login(args.user, password, factor)
        keepalive = asyncio.create_task(_keep_login_alive(broker))
        conn: Any = None
        try:
            ask = ask_pool if sys.stdin.isatty() and not args.password_stdin else None
            pool = choose_pool(args.pool, await broker.desktops(), ask)
            say(tr("Asking for a desktop in pool {pool} ...", pool=pool))
            d = await wait_ready(broker, await broker.request(pool), args.wait)
            d, conn = await first_connect(broker, d)
            say(tr("Gateway host key verified: {fingerprint}", fingerprint=d.fingerprint))
            forward.use(conn, (d.desktop_address, d.desktop_port))
            return await session_loop(broker, forward, d, conn, args.no_client)
        except asyncio.CancelledError:
            say(
                tr("Disconnecting ... your desktop keeps running; run vdi-connect again to return.")
            )
            return OK
        finally:
            keepalive.cancel()
            await forward.close()
            if conn is not None:
                conn.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.wait_closed(), LOGOUT_TIMEOUT_S)
            await broker.logout()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vdi-connect",
        description="Log in to the broker, get a desktop, tunnel to it and start the desktop"
        " client.",
    )
    parser.add_argument("--version", action="version", version=f"vdi-connect {__version__}")
    parser.add_argument("url", help="the broker's address, e.g. https://vdi.example.org")
    parser.add_argument("--user", required=True, help="your user name")
    parser.add_argument(
        "--pool", help="the desktop pool (default: your only one; asked when there are several)"
    )
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password (first line) and the code (second line) from standard input",
    )
    parser.add_argument(
        "--code", help="the six-digit code from your authenticator app (not a recovery code)"
    )
    parser.add_argument(
        "--no-client", action="store_true", help="do not start a desktop client; print how to"
    )
    parser.add_argument(
        "--local-port",
        type=bounded_int(0, 65535),
        default=0,
        metavar="PORT",
        help="local port (default: a free one)",
    )
    parser.add_argument("--ca-file", help="CA certificate file for the broker's HTTPS")
    parser.add_argument(
        "--wait",
        type=bounded_int(1, 86400),
        default=300,
        metavar="SECONDS",
        help="how long to wait for a desktop to start (default 300)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    use_language(desktop_language(os.environ, windows_display_locale()))
    try:
        return asyncio.run(run(args))
    except Stop as stop:
        print(stop.message, file=sys.stderr, flush=True)
        return stop.code
    except httpx.HTTPError as exc:
        print(
            tr(
                "Cannot reach the broker at {url}: {problem}",
                url=args.url,
                problem=connection_problem(exc),
            ),
            file=sys.stderr,
            flush=True,
        )
        return NO_BROKER
    except asyncssh.Error as exc:
        print(
            tr("The gateway refused the connection: {reason}", reason=exc.reason),
            file=sys.stderr,
            flush=True,
        )
        return GATEWAY_PROBLEM
    except KeyboardInterrupt:
        print(tr("Disconnected."), file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
