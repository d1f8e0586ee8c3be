"""Rendering a portal page: templates, language, one-time notices, page headers.

Every HTML response of the portal is made here, so every page gets the same
Content-Security-Policy (no inline script or style), the language the person
chose and the notice left by the form they just sent.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from broker.deps import Identity
from broker.i18n import SUPPORTED, negotiate
from broker.runtime import Runtime
from broker.security.crypto import DecryptionError
from broker.web import cookies, csrf
from broker.web.i18n import Translate, translator
from broker.web.static import static_url

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
LANGUAGE_COOKIE = "vdi_lang"
LANGUAGE_MAX_AGE_S = 365 * 24 * 3600
FLASH_COOKIE = "vdi_flash"
FLASH_CONTEXT = "portal-flash"
FLASH_MAX_CHARS = 1000

_env = Environment(
    loader=PackageLoader("broker.web", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.globals["static_url"] = static_url


def language_of(request: Request, rt: Runtime) -> str:
    """A `lang` query parameter (the switch), else the remembered choice, else the
    browser's Accept-Language, else the broker's default (German)."""
    chosen = request.query_params.get("lang")
    if chosen in SUPPORTED:
        return chosen
    remembered = request.cookies.get(LANGUAGE_COOKIE)
    if remembered in SUPPORTED:
        return remembered
    return negotiate(request.headers.get("accept-language"), rt.settings.language)


# -- one-time notices (after POST, redirect, GET) -------------------------------------


@dataclass(frozen=True)
class Notice:
    kind: str  # ok | info | error
    text: str


def say(request: Request, rt: Runtime, kind: str, key: str, **params: Any) -> Notice:
    """A notice from the catalogue, in the page's language."""
    return Notice(kind, translator(language_of(request, rt))(key, **params))


def set_flash(response: Response, rt: Runtime, notice: Notice) -> None:
    """Leave a notice for the next page. Encrypted, so nobody else can put words
    on our pages through a planted cookie."""
    payload = json.dumps({"kind": notice.kind, "text": notice.text[:FLASH_MAX_CHARS]})
    cookies.put(response, rt, FLASH_COOKIE, rt.box.encrypt(payload, FLASH_CONTEXT), 300)


def _take_flash(request: Request, rt: Runtime) -> Notice | None:
    value = cookies.read(request, rt, FLASH_COOKIE)
    if not value:
        return None
    try:
        data = json.loads(rt.box.decrypt(value, FLASH_CONTEXT))
        return Notice(str(data["kind"]), str(data["text"]))
    except (DecryptionError, ValueError, KeyError, TypeError):
        return None


def redirect(url: str) -> RedirectResponse:
    """303: after a form, the browser fetches the next page with GET."""
    return RedirectResponse(url, status_code=303)


def redirect_with(url: str, rt: Runtime, notice: Notice) -> RedirectResponse:
    response = redirect(url)
    set_flash(response, rt, notice)
    return response


# -- formatting helpers for templates ------------------------------------------------


def _formatters(rt: Runtime, t: Translate, language: str) -> dict[str, Any]:
    zone = ZoneInfo(rt.settings.timezone)
    now = rt.clock.now()

    def when(value: dt.datetime | None) -> str:
        if value is None:
            return t("never")
        return value.astimezone(zone).strftime(t("time.format"))

    def age(value: dt.datetime | None) -> str:
        if value is None:
            return t("never")
        seconds = max(0, int((now - value).total_seconds()))
        # Each unit from twice its size on: "90 s", "5 min", "3 h", "2 days".
        for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
            if seconds >= 2 * size:
                return t(f"age.{unit}", n=seconds // size)
        return t("age.s", n=seconds)

    def percent(ratio: float) -> str:
        return f"{round(ratio * 100)} %"

    def share(ratio: float) -> str:
        """A share someone typed, as a percentage to two places at most, written
        as the page's language writes it: "12,5 %" in German, "12.5 %" in English."""
        number = f"{ratio * 100:.2f}".rstrip("0").rstrip(".")
        return f"{number.replace('.', ',') if language == 'de' else number} %"

    return {
        "when": when,
        "age": age,
        "percent": percent,
        "share": share,
        "zone": rt.settings.timezone,
    }


def _switch_url(request: Request, language: str, here: str | None, who: Identity | None) -> str:
    """The page again in the other language. A page that answers a form (POST)
    has no address of its own to load again: it names one (`here`), else the
    switch leads to My desktops or to the login page. `here` may have a query
    of its own (the login page's `next`)."""
    if here is None and request.method not in ("GET", "HEAD"):
        here = "/desktops" if who else "/login"
    if here is not None:
        joint = "&" if "?" in here else "?"
        return f"{here}{joint}{urlencode({'lang': language})}"
    query = {k: v for k, v in request.query_params.items() if k not in ("lang", "expired")}
    query["lang"] = language
    return f"{request.url.path}?{urlencode(query)}"


# -- rendering -------------------------------------------------------------------------


def render(
    request: Request,
    rt: Runtime,
    template: str,
    *,
    who: Identity | None = None,
    status: int = 200,
    prelogin: bool = False,
    notice: Notice | None = None,
    here: str | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render a page. `prelogin` pages carry the login CSRF field; a `notice`
    shows instead of one left by the previous form; `here` is the address that
    shows the page again, for a page that answers a form.

    No page is stored by a browser or proxy (no-store): some show a secret once
    (a TOTP key, recovery codes, a ticket), the others personal data that must
    not come back through the back button after logging out."""
    language = language_of(request, rt)
    t = translator(language)
    flash = _take_flash(request, rt)
    field, new_cookie = csrf.prelogin_token(request, rt) if prelogin else (None, None)
    other = "en" if language == "de" else "de"
    html = _env.get_template(template).render(
        lang=language,
        t=t,
        who=who,
        csrf_token=who.csrf_token if who else field,
        notice=notice or flash,
        path=request.url.path,
        switch_url=_switch_url(request, other, here, who),
        **_formatters(rt, t, language),
        **context,
    )
    response = HTMLResponse(html, status_code=status)
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["Cache-Control"] = "no-store"
    if request.query_params.get("lang") in SUPPORTED:
        # Not a secret and wanted on the first page a link opens: Lax, readable.
        response.set_cookie(
            LANGUAGE_COOKIE,
            language,
            max_age=LANGUAGE_MAX_AGE_S,
            path="/",
            secure=rt.settings.cookie_secure,
            samesite="lax",
        )
    if flash is not None:
        cookies.clear(response, rt, FLASH_COOKIE)
    if new_cookie is not None:
        csrf.set_prelogin_cookie(response, rt, new_cookie)
    return response
