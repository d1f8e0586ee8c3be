"""HTTP endpoints: agent reports, and hosts for administrators."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request

from broker.deps import AdminDep, ClientDep, RuntimeDep
from broker.domain import HostState
from broker.hosts import ingest, service
from broker.runtime import Runtime

router = APIRouter(prefix="/api/v1", tags=["hosts"])


@router.post("/agent/report")
async def agent_report(
    request: Request,
    rt: RuntimeDep,
    client: ClientDep,
    authorization: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    # Authenticate before reading up to a megabyte of JSON from a stranger.
    reporter = await ingest.authenticate(rt, ingest.bearer_token(authorization), client.ip)
    report = ingest.parse(await request.body())
    response = await ingest.ingest(rt, reporter, report, client.ip)
    return response.model_dump(mode="json")


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
