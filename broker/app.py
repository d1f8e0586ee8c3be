"""The FastAPI application and its lifespan (runtime, background jobs, gateway)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from broker import __version__, metrics, web
from broker.audit.router import router as audit_router
from broker.auth.router import router as auth_router
from broker.clock import Clock
from broker.config import Settings
from broker.deps import RuntimeDep, client_ip_of
from broker.errors import Forbidden
from broker.gateway.service import Gateway
from broker.hosts.report_endpoint import ReportEndpoint
from broker.hosts.router import router as hosts_router
from broker.http_errors import install_error_handlers
from broker.jobs import JobRunner, default_jobs
from broker.leader import leader_for
from broker.middleware import BodySizeLimit, HeadAsGet, SecurityHeaders
from broker.net import in_networks, parse_networks
from broker.policy.router import router as policy_router
from broker.pools.router import router as pools_router
from broker.runtime import Runtime, open_runtime
from broker.sessions.router import router as sessions_router
from broker.store.checkpoint import Checkpointer

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, *, clock: Clock | None = None, runtime: Runtime | None = None
) -> FastAPI:
    """Build the app. The runtime is opened in the lifespan unless one is given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = runtime or await open_runtime(settings, clock=clock)
        app.state.runtime = rt
        gateway = Gateway(rt) if settings.gateway_enabled else None
        if gateway is not None:
            await gateway.start()
        app.state.gateway = gateway
        jobs = JobRunner(
            rt, default_jobs(rt), leader_for(rt.db, settings.data_dir), settings.job_interval_s
        )
        app.state.jobs = jobs
        if settings.jobs_enabled:
            jobs.start()
        checkpointer = None
        if rt.db.is_sqlite:
            checkpointer = Checkpointer(rt.db, settings.sqlite_checkpoint_interval_s)
            checkpointer.start()
        app.state.checkpointer = checkpointer
        try:
            yield
        finally:
            if checkpointer is not None:
                await checkpointer.stop()
            await jobs.stop()
            if gateway is not None:
                await gateway.stop()
            if runtime is None:
                await rt.close()

    app = FastAPI(
        title="vdi-broker",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
        # The broker's telemetry is its own /metrics and audit log. FastAPI's
        # built-in OpenTelemetry, once an exporter is set up from the
        # environment, records validation failures with their input: a
        # password in a login body would leave the host.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.trusted_proxies = parse_networks(settings.trusted_proxies)
    metrics_networks = parse_networks(settings.metrics_networks)
    if runtime is not None:
        app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(auth_router)
    app.include_router(audit_router)
    app.include_router(hosts_router)
    app.include_router(policy_router)
    app.include_router(pools_router)
    app.include_router(sessions_router)
    web.install(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, Any]:
        jobs: JobRunner | None = getattr(app.state, "jobs", None)
        role = (
            "off"
            if jobs is None or not settings.jobs_enabled
            else ("leader" if jobs.leading else "standby")
        )
        return {"status": "ok", "version": __version__, "jobs": role}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(rt: RuntimeDep) -> JSONResponse:
        try:
            async with rt.db.read() as s:
                await s.execute(text("SELECT 1"))
        except Exception as exc:  # any database failure means "not ready"
            log.warning("readiness check failed: %s", type(exc).__name__)
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request, rt: RuntimeDep) -> Response:
        if not in_networks(client_ip_of(request), metrics_networks):
            raise Forbidden(
                "Metrics are served to the monitoring network only (setting metrics_networks)."
            )
        return Response(await metrics.render(rt), media_type=metrics.CONTENT_TYPE)

    app.add_middleware(ReportEndpoint)
    app.add_middleware(SecurityHeaders, hsts=settings.tls_cert_file is not None)
    app.add_middleware(BodySizeLimit)
    app.add_middleware(HeadAsGet)
    return app
