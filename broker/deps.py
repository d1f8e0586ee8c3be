"""FastAPI dependencies: the runtime, the settings, the caller and their rights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from broker.auth import websessions
from broker.auth.login import Client
from broker.config import Settings
from broker.domain import Role
from broker.errors import Forbidden, Unauthorized
from broker.net import client_ip
from broker.runtime import Runtime
from broker.store.tables import User, WebSession

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_settings(rt: RuntimeDep) -> Settings:
    return rt.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def client_ip_of(request: Request) -> str | None:
    """The caller's address, believing X-Forwarded-For only from trusted proxies.

    Every X-Forwarded-For line counts, in order, as one list (RFC 9110, 5.3): a
    proxy may add its hop as a line of its own (HAProxy's `option forwardfor`)
    instead of appending it to the client's, and the first line alone is then
    whatever the client wrote."""
    peer = request.client.host if request.client else None
    forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
    return client_ip(peer, forwarded or None, request.app.state.trusted_proxies)


async def get_client(request: Request) -> Client:
    return Client(ip=client_ip_of(request), user_agent=request.headers.get("user-agent"))


ClientDep = Annotated[Client, Depends(get_client)]


@dataclass(frozen=True)
class Identity:
    user: User
    web: WebSession
    csrf_token: str

    @property
    def is_admin(self) -> bool:
        return self.user.role == Role.ADMIN


async def resolve_identity(request: Request, rt: Runtime) -> Identity | None:
    """The logged-in caller, or None; shared by the API and the portal pages."""
    cookie = request.cookies.get(websessions.cookie_name(rt.settings.cookie_secure))
    if not cookie:
        return None
    now = rt.clock.now()
    timeouts = websessions.Timeouts.from_settings(rt.settings)
    async with rt.db.read_conn() as conn:
        found = await websessions.resolve(conn, cookie, now, timeouts)
    if found is None:
        return None
    ws, user = found
    if websessions.needs_touch(ws, now):
        async with rt.db.write_conn() as conn:
            await websessions.touch(conn, ws.id_hash, now)
    return Identity(user, ws, websessions.csrf_token(rt.box, ws.id_hash))


async def current_identity(request: Request, rt: RuntimeDep) -> Identity:
    identity = await resolve_identity(request, rt)
    if identity is None:
        raise Unauthorized("Please log in.", code="not_authenticated")
    if request.method not in SAFE_METHODS:
        token = request.headers.get(CSRF_HEADER)
        if not websessions.csrf_matches(rt.box, identity.web, token):
            raise Forbidden("The request lacks a valid CSRF token.", code="csrf_failed")
    return identity


IdentityDep = Annotated[Identity, Depends(current_identity)]


async def admin_identity(identity: IdentityDep) -> Identity:
    if not identity.is_admin:
        raise Forbidden("This needs an administrator.", code="forbidden")
    return identity


AdminDep = Annotated[Identity, Depends(admin_identity)]
