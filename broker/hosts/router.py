"""HTTP endpoints of hosts for administrators (agent reports: report_endpoint)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from broker.deps import AdminDep, RuntimeDep
from broker.domain import HostState
from broker.hosts import service
from broker.runtime import Runtime

router = APIRouter(prefix="/api/v1", tags=["hosts"])


@router.get("/admin/hosts")
async def list_hosts(_: AdminDep, rt: RuntimeDep) -> dict[str, Any]:
    return {"items": await service.list_all(rt)}


async def _set_state(rt: Runtime, name: str, state: HostState, actor: str) -> dict[str, Any]:
    host = await service.set_state(rt, name, state, actor)
    return {"name": host.name, "state": host.state}


@router.post("/admin/hosts/{name}/drain")
async def drain(name: str, identity: AdminDep, rt: RuntimeDep) -> dict[str, Any]:
    return await _set_state(rt, name, HostState.DRAINING, identity.user.name)


@router.post("/admin/hosts/{name}/activate")
async def activate(name: str, identity: AdminDep, rt: RuntimeDep) -> dict[str, Any]:
    return await _set_state(rt, name, HostState.ACTIVE, identity.user.name)


@router.post("/admin/hosts/{name}/maintenance")
async def maintenance(name: str, identity: AdminDep, rt: RuntimeDep) -> dict[str, Any]:
    return await _set_state(rt, name, HostState.MAINTENANCE, identity.user.name)
