"""A small HTTP/1.1 client for the report POST: h11 over asyncio streams.

h11 is the HTTP/1.1 engine inside httpx. Used directly it saves the ~7 MB of
resident memory an httpx client costs (the agent's whole budget is ~30 MB, see
bench/bench_agent.py), and one POST every interval needs none of httpx's
features. Every request
opens its own connection, so nothing stale survives a broker restart.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

MAX_RESPONSE_BYTES = 1 << 20
_READ_SIZE = 65536


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes
    retry_after_s: float | None = None  # the answer's Retry-After, in seconds


def retry_after(headers: list[tuple[bytes, bytes]]) -> float | None:
    """Retry-After as whole seconds (the form the broker sends); None when absent
    or in another form (an HTTP date), which the agent's own backoff then covers."""
    for name, value in headers:
        if name.lower() == b"retry-after":
            text = value.strip()
            return float(text) if text.isdigit() and len(text) <= 9 else None
    return None


class HttpError(Exception):
    """The request did not get an answer: connection, TLS, timeout or protocol
    failure. The message names the failure, never a request header."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    tls: bool
    target: str  # path and query

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_url(url: str) -> Endpoint:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url}")
    if parts.username is not None or parts.password is not None:
        # Never sent (the token is the agent's credential), and the URL is logged:
        # a password here would end up in the journal. Not echoed back either.
        raise ValueError("the URL must not hold a user name or password (user:pw@...)")
    if "?" in url or "#" in url:
        raise ValueError(f"the URL must not hold a query or fragment (?... or #...): {url}")
    tls = parts.scheme == "https"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Endpoint(parts.hostname, parts.port or (443 if tls else 80), tls, target)


def local_address_towards(url: str) -> str | None:
    """The address this host sends from to reach `url`'s host: the kernel's
    choice of route, asked with an unconnected UDP socket, so nothing is sent.
    None when the name does not resolve or there is no route."""
    try:
        endpoint = parse_url(url)
        found = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_DGRAM)
    except (ValueError, OSError):
        return None
    for family, kind, proto, _, address in found:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.connect(address)
                return str(probe.getsockname()[0])
        except OSError:
            continue
    return None


@functools.cache
def _tls() -> ssl.SSLContext:
    # Made once, and only for https: loading the CA store is the costly part.
    return ssl.create_default_context()


async def _exchange(endpoint: Endpoint, body: bytes, headers: Mapping[str, str]) -> HttpResponse:
    reader, writer = await asyncio.open_connection(
        endpoint.host,
        endpoint.port,
        ssl=_tls() if endpoint.tls else None,
        server_hostname=endpoint.host if endpoint.tls else None,
    )
    try:
        conn = h11.Connection(our_role=h11.CLIENT)
        request = h11.Request(
            method="POST",
            target=endpoint.target,
            headers=[
                ("Host", endpoint.host_header),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
                *headers.items(),
            ],
        )
        # One write, so head and body leave in one send where they fit.
        writer.write(
            b"".join(
                conn.send(event) or b""
                for event in (request, h11.Data(data=body), h11.EndOfMessage())
            )
        )
        await writer.drain()
        status = 0
        wait_s: float | None = None
        received = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(_READ_SIZE))
            elif isinstance(event, h11.Response):
                status = event.status_code
                wait_s = retry_after(list(event.headers))
            elif isinstance(event, h11.Data):
                received += event.data
                if len(received) > MAX_RESPONSE_BYTES:
                    raise HttpError("the answer is larger than 1 MiB")
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                if not status:
                    closed = "the connection closed without an answer"
                    raise HttpError(closed + _https_hint(endpoint))
                return HttpResponse(status, bytes(received), wait_s)
    finally:
        writer.close()


async def post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> HttpResponse:
    """POST `body` and return the final answer, whatever its status."""
    endpoint = parse_url(url)
    try:
        async with asyncio.timeout(timeout_s):
            return await _exchange(endpoint, body, headers)
    except TimeoutError:
        raise HttpError(f"no answer within {timeout_s:g} s") from None
    except ssl.SSLError as exc:
        # An https:// address whose server answers in plain HTTP: OpenSSL reads the
        # HTTP text as a TLS record of an unknown version.
        plain = "; if the broker speaks plain HTTP there, give its http:// address"
        hint = plain if exc.reason == "WRONG_VERSION_NUMBER" else ""
        raise HttpError(f"TLS failed: {exc.reason or exc}{hint}") from None
    except OSError as exc:
        # asyncio words a refused connect as "Connect call failed (address)"; the
        # errno's own text ("Connection refused") says more to a person.
        reason = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
        raise HttpError(reason) from None
    except h11.ProtocolError as exc:
        raise HttpError(f"not a valid HTTP answer: {exc}{_https_hint(endpoint)}") from None


def _https_hint(endpoint: Endpoint) -> str:
    """For a plain-HTTP address that got no HTTP answer: the usual cause is a broker
    that speaks HTTPS there (it terminates TLS itself, or a proxy does)."""
    return "" if endpoint.tls else "; if the broker speaks HTTPS, give its https:// address"
