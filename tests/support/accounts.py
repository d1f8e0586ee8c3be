"""Creating users and logging them in, for tests."""

from __future__ import annotations

from typing import Any

import httpx

from broker.auth import enrolment, totp
from broker.domain import Role, WorkMode
from broker.runtime import Runtime
from broker.users import service as users

PASSWORD = "correct horse battery staple"


async def add_user(
    rt: Runtime,
    name: str = "maria",
    *,
    password: str = PASSWORD,
    department: str = "Finanzen",
    role: Role = Role.STAFF,
    work_mode: WorkMode = WorkMode.HOME,
    enrol: bool = True,
    **extra: Any,
) -> str | None:
    """Add a user; with `enrol`, give them TOTP and return the secret."""
    await users.add(rt, users.NewUser(name, department, role, work_mode, **extra), password, "test")
    if not enrol:
        return None
    return (await enrolment.admin_enrol(rt, name, "test", replace=False)).secret


def code_now(rt: Runtime, secret: str, steps_back: int = 0) -> str:
    step = totp.step_at(rt.clock.now().timestamp()) - steps_back
    return totp.code_at_step(secret, step)


async def login(
    client: httpx.AsyncClient,
    name: str,
    password: str = PASSWORD,
    code: str | None = None,
    **extra: Any,
) -> httpx.Response:
    body: dict[str, Any] = {"username": name, "password": password, **extra}
    if code is not None:
        body["code"] = code
    return await client.post("/api/v1/auth/login", json=body)
