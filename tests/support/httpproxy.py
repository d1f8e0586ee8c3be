"""A reverse proxy in front of a real broker, as nginx stands there, that a test can
switch to answering every request with an error of its own (a 502 while the
broker restarts, a 429 with Retry-After): TCP passed through, or a canned answer."""

from __future__ import annotations

import asyncio
import contextlib
from http import HTTPStatus

from tests.support.gateway import TcpProxy


class SwitchableProxy(TcpProxy):
    """127.0.0.1:port in front of 127.0.0.1:target_port. `fail(502)` cuts the
    connections passed through so far (keep-alive ones too) and answers each
    further request with that status and an HTML page, as nginx does;
    `pass_through()` ends that."""

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.failing: int | None = None
        self.retry_after: str | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, status: int, retry_after: str | None = None) -> None:
        self.failing, self.retry_after = status, retry_after
        self.drop()

    def pass_through(self) -> None:
        self.failing = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.failing is None:
            await super()._serve(reader, writer)
        else:
            await self._answer(reader, writer, self.failing)

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: int
    ) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            await reader.readexactly(length)
        phrase = HTTPStatus(status).phrase
        body = f"<html><body><h1>{status} {phrase}</h1></body></html>".encode()
        extra = f"Retry-After: {self.retry_after}\r\n" if self.retry_after else ""
        writer.write(
            f"HTTP/1.1 {status} {phrase}\r\nContent-Type: text/html\r\n{extra}"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()
