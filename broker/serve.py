"""Run the broker: uvicorn serving the app (whose lifespan starts jobs and gateway)."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from collections.abc import Coroutine
from typing import Any

import uvicorn

from agent import systemd
from broker.app import create_app
from broker.config import Settings
from broker.tls_files import check_tls_files


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    # Access logs carry query strings and paths only, never bodies, but they are
    # noisy at INFO; operators get them at DEBUG.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def uvicorn_config(settings: Settings, sock: socket.socket | None = None) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        proxy_headers=False,  # the broker decides itself which proxies to trust
        server_header=False,
        ssl_certfile=str(settings.tls_cert_file) if settings.tls_cert_file else None,
        ssl_keyfile=str(settings.tls_key_file) if settings.tls_key_file else None,
        timeout_graceful_shutdown=10,
    )


class NotifyingServer(uvicorn.Server):
    """uvicorn, telling systemd (Type=notify) once the app has started: the
    lifespan (migrations, gateway, jobs) is done and the port is listening."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            # What is alive now (modules, the app, connection pools, caches) lives
            # as long as the process. Frozen, it is out of the collector's view, so
            # full collections no longer walk it: at 2,000 hosts they cost a scrape
            # or a session request tens of milliseconds now and then.
            gc.freeze()
            systemd.notify("READY=1")

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        systemd.notify("STOPPING=1")
        await super().shutdown(sockets)


async def serve(settings: Settings) -> None:
    server = NotifyingServer(uvicorn_config(settings))
    await server.serve()


def run_async(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop where it is installed (uvicorn[standard] brings it on Linux)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def run_server(settings: Settings) -> int:
    check_tls_files(settings.tls_cert_file, settings.tls_key_file)
    configure_logging(settings.log_level)
    run_async(serve(settings))
    return 0
