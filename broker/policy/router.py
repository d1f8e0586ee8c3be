"""Admin API of the policies: department caps, telework schedules, priority classes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

from broker.deps import AdminDep, RuntimeDep
from broker.numbers import WrittenInt
from broker.policy import store
from broker.store.types import MAX_INT

router = APIRouter(prefix="/api/v1/admin/policies", tags=["admin"])


class CapBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    remote_cap: StrictInt | None = None
    remote_share: StrictFloat | None = None


class ScheduleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: str = Field(max_length=16)
    subject: str = Field(max_length=64)
    days: str = Field(max_length=64)
    start: str = Field(max_length=8)
    end: str = Field(max_length=8)


@router.get("")
async def list_policies(_: AdminDep, rt: RuntimeDep) -> dict[str, Any]:
    return await store.overview(rt)


@router.put("/departments/{department}")
async def set_cap(
    department: str, body: CapBody, identity: AdminDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Set a department's cap on home work; both values null remove it."""
    cap = await store.set_department_cap(
        rt,
        department,
        max_sessions=body.remote_cap,
        share=body.remote_share,
        actor=identity.user.name,
    )
    if cap is None:
        return {"department": department.strip(), "remote_cap": None, "remote_share": None}
    return cap


@router.post("/schedules", status_code=201)
async def add_schedule(body: ScheduleBody, identity: AdminDep, rt: RuntimeDep) -> dict[str, Any]:
    """The window as stored, and `sessions_outside`: open home sessions outside
    their windows now, which end `schedule_grace_s` after their window closed or
    the windows changed, whichever is later."""
    schedule_id = await store.add_schedule(
        rt, body.scope, body.subject, body.days, body.start, body.end, identity.user.name
    )
    added = await store.get_schedule(rt, schedule_id)
    return {**added, "sessions_outside": await store.sessions_outside_windows(rt)}


@router.delete("/schedules/{schedule_id}")
async def remove_schedule(
    schedule_id: Annotated[WrittenInt, Path(ge=1, le=MAX_INT)], identity: AdminDep, rt: RuntimeDep
) -> dict[str, Any]:
    """The window as it was, and `sessions_outside`, as for adding one: removing a
    window can leave sessions outside the windows that remain."""
    removed = await store.remove_schedule(rt, schedule_id, identity.user.name)
    return {**removed, "sessions_outside": await store.sessions_outside_windows(rt)}


@router.put("/priority-classes/{name}")
async def add_priority_class(
    name: str, identity: AdminDep, rt: RuntimeDep, response: Response
) -> dict[str, Any]:
    """Idempotent: 201 when the class is new, 200 when it existed already."""
    created = await store.add_priority_class(rt, name, identity.user.name)
    response.status_code = 201 if created else 200
    return {"name": name.strip(), "created": created}


@router.delete("/priority-classes/{name}")
async def remove_priority_class(name: str, identity: AdminDep, rt: RuntimeDep) -> dict[str, Any]:
    await store.remove_priority_class(rt, name, identity.user.name)
    return {"name": name.strip()}
