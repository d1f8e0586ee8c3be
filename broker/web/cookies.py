"""The portal's own short-lived cookies (login CSRF, enrolment, notices).

They follow the session cookie's rules (broker.auth.router): HttpOnly,
SameSite=Strict, Path=/, Secure and the __Host- prefix unless the broker runs
the plain-http localhost demo.
"""

from __future__ import annotations

from fastapi import Request, Response

from broker.runtime import Runtime


def name(base: str, rt: Runtime) -> str:
    # Browsers only accept the __Host- prefix on Secure cookies.
    return f"__Host-{base}" if rt.settings.cookie_secure else base


def read(request: Request, rt: Runtime, base: str) -> str | None:
    return request.cookies.get(name(base, rt))


def put(response: Response, rt: Runtime, base: str, value: str, max_age: int) -> None:
    secure = rt.settings.cookie_secure
    response.set_cookie(
        name(base, rt),
        value,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )


def clear(response: Response, rt: Runtime, base: str) -> None:
    secure = rt.settings.cookie_secure
    response.delete_cookie(
        name(base, rt), path="/", secure=secure, httponly=True, samesite="strict"
    )
