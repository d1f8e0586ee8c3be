"""CSRF protection of the portal's forms.

Logged-in forms carry the web session's own CSRF token (the one the API expects
as X-CSRF-Token) in a hidden field `csrf_token`.

The login and enrolment forms are sent before a session exists, so they use a
signed double submit: a random value in a short-lived, HttpOnly, SameSite=Strict
cookie, and in the form its keyed hash, which only the broker can compute. A
site that cannot read our pages cannot know the field; one that could plant a
cookie still cannot forge the matching field.
"""

from __future__ import annotations

from fastapi import Request, Response

from broker.auth import websessions
from broker.deps import Identity
from broker.runtime import Runtime
from broker.security.tokens import new_token, same
from broker.web import cookies

FIELD = "csrf_token"
PRELOGIN_MAX_AGE_S = 2 * 3600


PRELOGIN_COOKIE = "vdi_login_csrf"


def _field_for(rt: Runtime, cookie_value: str) -> str:
    return rt.box.keyed_hash(f"login-csrf:{cookie_value}")


def prelogin_token(request: Request, rt: Runtime) -> tuple[str, str | None]:
    """The field value for a pre-login form, and a new cookie value to set when
    the browser has none yet (else None)."""
    current = cookies.read(request, rt, PRELOGIN_COOKIE)
    if current:
        return _field_for(rt, current), None
    fresh = new_token()
    return _field_for(rt, fresh), fresh


def set_prelogin_cookie(response: Response, rt: Runtime, value: str) -> None:
    cookies.put(response, rt, PRELOGIN_COOKIE, value, PRELOGIN_MAX_AGE_S)


def prelogin_matches(request: Request, rt: Runtime, field: str | None) -> bool:
    """Constant-time check of a pre-login form's field against the cookie."""
    cookie = cookies.read(request, rt, PRELOGIN_COOKIE)
    if not cookie or not field:
        return False
    return any(same(expected, field) for expected in rt.box.keyed_hashes(f"login-csrf:{cookie}"))


def session_matches(rt: Runtime, identity: Identity, field: str | None) -> bool:
    """A logged-in form's field against the web session's token."""
    return websessions.csrf_matches(rt.box, identity.web, field)
