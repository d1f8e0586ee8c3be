"""Admin API of pools: settings, entitlements and persistent desktop assignments."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from broker.deps import AdminDep, RuntimeDep
from broker.pools import service

router = APIRouter(prefix="/api/v1/admin/pools", tags=["admin"])


class PoolPatch(BaseModel):
    """The settings to change; a null timeout means no limit, null spare desktops
    that the broker does not manage power."""

    model_config = ConfigDict(extra="forbid")
    max_sessions: StrictInt | None = None
    # Strict: a JSON number, not "0.1" or " 0.1 " in a string.
    priority_reserve: StrictFloat | None = None
    spare_desktops: StrictInt | None = None
    disconnect_timeout_s: StrictInt | None = None
    max_session_s: StrictInt | None = None
    idle_timeout_s: StrictInt | None = None
    field: StrictBool | None = None


class EntitlementBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(max_length=16)
    value: str = Field(max_length=64)


class AssignmentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(max_length=64)
    desktop: str | None = Field(None, max_length=256)


@router.get("")
async def list_pools(_: AdminDep, rt: RuntimeDep) -> dict[str, Any]:
    return {"items": await service.list_all(rt)}


@router.patch("/{name}")
async def change_pool(
    name: str, body: PoolPatch, identity: AdminDep, rt: RuntimeDep
) -> dict[str, Any]:
    # Only the fields sent count; an explicit null is a value of its own.
    changes = service.PoolChanges(**body.model_dump(exclude_unset=True))
    return await service.update(rt, name, changes, identity.user.name)


@router.post("/{name}/entitlements", status_code=201)
async def entitle(
    name: str, body: EntitlementBody, identity: AdminDep, rt: RuntimeDep
) -> dict[str, Any]:
    return await service.entitle(rt, name, body.kind, body.value, identity.user.name)


@router.delete("/{name}/entitlements/{kind}/{value}")
async def revoke(
    name: str,
    kind: str,
    value: str,
    identity: AdminDep,
    rt: RuntimeDep,
    open_to_all: bool = False,
) -> dict[str, Any]:
    return await service.revoke(rt, name, kind, value, identity.user.name, open_to_all=open_to_all)


@router.post("/{name}/assignments", status_code=201)
async def assign(
    name: str, body: AssignmentBody, identity: AdminDep, rt: RuntimeDep
) -> dict[str, Any]:
    done = await service.assign_desktop(rt, name, body.user, body.desktop, identity.user.name)
    return done.as_dict()


@router.delete("/{name}/assignments/{user}")
async def unassign(name: str, user: str, identity: AdminDep, rt: RuntimeDep) -> dict[str, Any]:
    done = await service.unassign_desktop(rt, name, user, identity.user.name)
    return done.as_dict()
