"""POST /api/v1/agent/report, served in front of the FastAPI router.

Every agent calls this every few seconds; at thousands of hosts the router's
machinery (route matching, dependency solving, exception wrappers, encoding a
returned dict) cost as much CPU as storing the report. So this small ASGI layer
answers the one path itself and hands every other request on. It sits inside
the body-size limit and the security headers like any route, and answers
errors in the same JSON shape (broker.http_errors).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from broker.deps import client_ip_of
from broker.errors import VdiError
from broker.hosts import ingest
from broker.http_errors import database_down_response, vdi_error_response
from broker.runtime import Runtime
from broker.store.db_errors import database_down

PATH = "/api/v1/agent/report"


async def handle(request: Request) -> Response:
    rt: Runtime = request.app.state.runtime
    client_ip = client_ip_of(request)
    # Authenticate before reading up to a megabyte of JSON from a stranger.
    token = ingest.bearer_token(request.headers.get("authorization"))
    host = await ingest.authenticate(rt, token, client_ip)
    report = ingest.parse(await request.body())
    assert token is not None  # authenticate refused a missing token
    answer = await ingest.ingest(rt, host, token, report, client_ip)
    return Response(answer.model_dump_json(), media_type="application/json")


class ReportEndpoint:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            response: Response = Response(
                b'{"error":"method_not_allowed","message":"Use POST."}',
                status_code=405,
                media_type="application/json",
                headers={"Allow": "POST"},
            )
        else:
            try:
                response = await handle(Request(scope, receive))
            except VdiError as exc:
                response = vdi_error_response(exc)
            except Exception as exc:
                if not database_down(exc):
                    raise
                response = database_down_response(exc)
        await response(scope, receive, send)
