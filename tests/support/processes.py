"""Real processes on loopback: free ports, waiting for a server, a broker subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from broker.ports import free_port

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without a developer's own VDI_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VDI_")}
    env.update(extra or {})
    return env


def wait_http(
    url: str,
    timeout: float = 30.0,
    proc: subprocess.Popen[bytes] | None = None,
    verify: bool = True,
) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1.0, verify=verify).status_code < 500:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s: {last}")


def until(check: Callable[[], Any], timeout: float = 30, what: str = "", step: float = 0.25) -> Any:
    """Poll `check` every `step` seconds until it returns something truthy, and
    return that.

    Real processes on a loaded machine take their time; a deadline instead of a
    fixed sleep waits no longer than needed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what or check}")


def vdi_broker(
    *args: str, env: Mapping[str, str], input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the installed `vdi-broker` command and capture its output."""
    return subprocess.run(
        [str(VENV_BIN / "vdi-broker"), *args],
        env=dict(env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def new_broker_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of `vdi-broker` commands on a new data directory, whose
    database `db upgrade` has created (other commands refuse a missing one)."""
    env = clean_env({"VDI_DATA_DIR": str(data_dir), **(extra or {})})
    created = vdi_broker("db", "upgrade", env=env)
    assert created.returncode == 0, created.stderr
    return env


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_broker(
    data_dir: Path, db_url: str | None = None, *, port: int | None = None, **settings: str
) -> tuple[subprocess.Popen[bytes], str]:
    """A real `vdi-broker serve` (on a free port unless given); returns the process
    and base URL. `settings` are VDI_* variables without the prefix."""
    port = port or free_port()
    env = clean_env(
        {
            "VDI_DATA_DIR": str(data_dir),
            "VDI_HTTP_PORT": str(port),
            "VDI_GATEWAY_ENABLED": "false",
            "VDI_LOGIN_RATE_LIMIT": "1000",
            "VDI_LOG_LEVEL": "WARNING",
            **({"VDI_DATABASE_URL": db_url} if db_url else {}),
            **{f"VDI_{k.upper()}": v for k, v in settings.items()},
        }
    )
    proc = subprocess.Popen([str(VENV_BIN / "vdi-broker"), "serve"], env=env)
    tls = "tls_cert_file" in settings
    base = f"http://127.0.0.1:{port}"
    # With TLS the base URL stays http://... for callers to rewrite; readiness
    # is checked over https without verification (the test verifies itself).
    ready_url = f"{base.replace('http://', 'https://') if tls else base}/healthz"
    try:
        wait_http(ready_url, proc=proc, verify=not tls)
    except BaseException:
        stop(proc)  # the caller never got it, so cannot stop it
        raise
    return proc, base


def start_agent(
    base: str, token_file: Path, state_dir: Path, host: str, *extra: str
) -> subprocess.Popen[bytes]:
    """A real `vdi-agent run` with simulated desktops reporting to `base`."""
    return subprocess.Popen(
        [
            str(VENV_BIN / "vdi-agent"),
            "run",
            "--broker",
            base,
            "--token-file",
            str(token_file),
            "--state-dir",
            str(state_dir),
            "--host-name",
            host,
            "--hypervisor",
            "simulated",
            "--interval",
            "1",
            "--log-level",
            "WARNING",
            *extra,
        ],
        env=clean_env(),
    )
