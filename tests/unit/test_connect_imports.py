"""vdi-connect runs on staff computers, often old laptops: it starts without the
broker's server side (storage, web framework, password hashing), which once
took most of its half-second of imports."""

from __future__ import annotations

import json
import subprocess
import sys

SERVER_SIDE = ("sqlalchemy", "asyncpg", "aiosqlite", "fastapi", "starlette", "argon2", "alembic")


def test_vdi_connect_does_not_load_the_server_side() -> None:
    # A fresh interpreter: this one has imported all of the broker already.
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys, broker.connect; print(json.dumps(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    modules = set(json.loads(loaded.stdout))
    assert "broker.connect" in modules and "asyncssh" in modules
    assert {m for m in modules if m.split(".")[0] in SERVER_SIDE} == set()
