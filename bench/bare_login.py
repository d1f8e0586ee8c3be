"""The login benchmark's ceiling: the same HTTP server (uvicorn, uvloop,
httptools) and the broker's own PasswordHasher, but an ASGI app whose only work
per request is the argon2id verification. No framework, database, TOTP, audit
or session. What it reaches against raw argon2id is what any login can reach on
this machine with this server; the broker's ratio is measured against the same
raw figure.

Run as `python -m bench.bare_login PORT MEMORY_KIB TIME_COST PARALLELISM`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from broker.auth.passwords import PasswordHasher

PASSWORD = "storm trooper passphrase 2026"
OK = json.dumps({"ok": True}).encode()

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def make_app(hasher: PasswordHasher) -> Callable[[dict[str, Any], Receive, Send], Awaitable[None]]:
    stored = hasher.hash_sync(PASSWORD)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        matches, _ = await hasher.verify(stored, json.loads(body)["password"])
        await send(
            {
                "type": "http.response.start",
                "status": 200 if matches else 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(OK)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": OK})

    return app


def main() -> None:
    port, memory_kib, time_cost, parallelism = (int(a) for a in sys.argv[1:5])
    hasher = PasswordHasher(memory_kib=memory_kib, time_cost=time_cost, parallelism=parallelism)
    uvicorn.run(
        make_app(hasher),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
