"""A small real broker stand-in: uvicorn serving a Starlette app on 127.0.0.1.

A module of its own name (not conftest) so test modules can import it without
depending on which conftest.py pytest imported last.

It checks every report against agent.protocol.Report, records it, and answers as
the broker does: actions are re-delivered until their result comes back. Tests
can make it answer an error status, or stop and start it on the same port.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agent.protocol import Report
from broker.ports import free_port

TOKEN = "vdi-host-token-Zq8x1c9SECRET"


class FakeBroker:
    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        """With `tls` (certificate and key file) it answers HTTPS."""
        self.tls = tls
        self.reports: list[Report] = []
        self.authorizations: list[str | None] = []
        self.status = 200
        self.retry_after: str | None = None  # the Retry-After of error answers
        self.times: list[float] = []  # when each report request arrived (monotonic)
        self.error: dict[str, Any] = {"error": "unavailable", "message": "maintenance"}
        self.status_after_actions: int | None = None  # switch to this once actions went out
        self.forget_results = 0  # drop this many incoming results (a lost acknowledgement)
        self.pending: list[dict[str, str]] = []
        self.interval_s = 0.1
        self.token: str | None = None  # when set, only this token is accepted
        # Below the ephemeral range (broker.ports): restarted on the same port, it
        # must not find the port taken in between by another bind to port 0 (a
        # test running alongside) or by an outgoing connection.
        self.port = free_port()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def serving(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def _report(self, request: Request) -> JSONResponse:
        self.times.append(time.monotonic())
        self.authorizations.append(request.headers.get("authorization"))
        if (
            self.token is not None
            and request.headers.get("authorization") != f"Bearer {self.token}"
        ):
            return JSONResponse({"error": "invalid_token", "message": "no"}, status_code=401)
        if self.status != 200:
            headers = {"Retry-After": self.retry_after} if self.retry_after else None
            return JSONResponse(self.error, status_code=self.status, headers=headers)
        report = Report.model_validate_json(await request.body())
        self.reports.append(report)
        for result in report.action_results:
            if self.forget_results:
                self.forget_results -= 1
                continue
            self.pending = [a for a in self.pending if a["id"] != result.id]
        if self.pending and self.status_after_actions is not None:
            self.status, self.status_after_actions = self.status_after_actions, None
        return JSONResponse({"actions": self.pending, "interval_s": self.interval_s})

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        app = Starlette(routes=[Route("/api/v1/agent/report", self._report, methods=["POST"])])
        cert, key = self.tls or (None, None)
        config = uvicorn.Config(
            app,
            log_config=None,
            lifespan="off",
            access_log=False,
            ssl_certfile=cert,
            ssl_keyfile=key,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        await eventually(lambda: self._server is not None and self._server.started)

    async def stop(self) -> None:
        assert self._server is not None and self._task is not None
        self._server.should_exit = True
        await self._task
        self._server = self._task = None


async def eventually(condition: Callable[[], object], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)
