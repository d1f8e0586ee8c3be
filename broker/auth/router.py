"""HTTP endpoints of login, logout, enrolment and the caller's own account."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from broker.audit import log as audit
from broker.auth import enrolment, websessions
from broker.auth import login as login_flow
from broker.auth.code_formats import RECOVERY_CODE_RE as RECOVERY_RE
from broker.auth.code_formats import TOTP_CODE_RE as TOTP_RE
from broker.deps import ClientDep, Identity, IdentityDep, RuntimeDep
from broker.runtime import Runtime
from broker.security.tokens import token_hash
from broker.users.service import as_dict

router = APIRouter(prefix="/api/v1", tags=["auth"])


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)
    code: str | None = Field(None, pattern=rf"^{TOTP_RE.pattern}$")
    recovery_code: str | None = Field(None, pattern=rf"^{RECOVERY_RE.pattern}$")

    @model_validator(mode="after")
    def _one_second_factor(self) -> LoginRequest:
        if (self.code is None) == (self.recovery_code is None):
            raise ValueError("give either `code` (six digits) or `recovery_code`")
        return self


class EnrolRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enrolment_token: str = Field(min_length=16, max_length=128)


class ConfirmRequest(EnrolRequest):
    code: str = Field(pattern=rf"^{TOTP_RE.pattern}$")


def set_session_cookie(response: Response, rt: Runtime, value: str) -> None:
    settings = rt.settings
    response.set_cookie(
        websessions.cookie_name(settings.cookie_secure),
        value,
        max_age=settings.session_absolute_timeout_s,
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(response: Response, rt: Runtime) -> None:
    settings = rt.settings
    response.delete_cookie(
        websessions.cookie_name(settings.cookie_secure),
        path="/",
        secure=settings.cookie_secure,
        httponly=True,
        samesite="strict",
    )


async def begin_session(
    request: Request, response: Response, rt: Runtime, web: websessions.NewWebSession
) -> None:
    """Hand a browser its new session after a login (API and portal alike)."""
    previous = request.cookies.get(websessions.cookie_name(rt.settings.cookie_secure))
    if previous:
        # A login always ends the session the browser had before: no fixation.
        async with rt.db.write() as s:
            await websessions.revoke(s, token_hash(previous), rt.clock.now())
    set_session_cookie(response, rt, web.cookie_value)
    response.headers["Cache-Control"] = "no-store"


async def end_session(
    identity: Identity, response: Response, rt: Runtime, client: login_flow.Client
) -> None:
    """Log a browser out (API and portal alike): revoke, audit, clear the cookie."""
    now = rt.clock.now()
    async with rt.db.write() as s:
        await websessions.revoke(s, identity.web.id_hash, now)
        await audit.record(s, now, "logout", username=identity.user.name, source_ip=client.ip)
    clear_session_cookie(response, rt)


@router.post("/auth/login")
async def login(
    body: LoginRequest, request: Request, response: Response, rt: RuntimeDep, client: ClientDep
) -> dict[str, Any]:
    creds = login_flow.Credentials(body.username, body.password, body.code, body.recovery_code)
    done = await login_flow.login(rt, creds, client)
    await begin_session(request, response, rt, done.web)
    return {
        "user": as_dict(done.user),
        "csrf_token": done.web.csrf_token,
        "idle_timeout_s": rt.settings.session_idle_timeout_s,
    }


@router.post("/auth/logout")
async def logout(
    identity: IdentityDep, response: Response, rt: RuntimeDep, client: ClientDep
) -> dict[str, bool]:
    await end_session(identity, response, rt, client)
    return {"ok": True}


@router.get("/me")
async def me(identity: IdentityDep, rt: RuntimeDep) -> dict[str, Any]:
    return {"user": as_dict(identity.user, rt.clock.now()), "csrf_token": identity.csrf_token}


@router.post("/auth/totp/enroll")
async def totp_enroll(body: EnrolRequest, rt: RuntimeDep, response: Response) -> dict[str, str]:
    setup = await enrolment.create_secret(rt, body.enrolment_token)
    response.headers["Cache-Control"] = "no-store"
    return {"secret": setup.secret, "otpauth_uri": setup.otpauth_uri, "qr_svg": setup.qr_svg}


@router.post("/auth/totp/confirm")
async def totp_confirm(
    body: ConfirmRequest, rt: RuntimeDep, client: ClientDep, response: Response
) -> dict[str, Any]:
    codes = await enrolment.confirm(rt, body.enrolment_token, body.code, client.ip)
    response.headers["Cache-Control"] = "no-store"
    return {
        "recovery_codes": codes,
        "message": "Your authenticator is set up. Keep these recovery codes somewhere safe; "
        "each works once. Now log in with a new code.",
    }
