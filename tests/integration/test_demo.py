"""`vdi-broker demo`: starts, prints working credentials, and stops on Ctrl-C."""

from __future__ import annotations

import datetime as dt
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import psutil

from broker.ports import free_port
from tests.support.processes import VENV_BIN, clean_env, stop, until
from tests.support.totp import oathtool_code


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> str:
    lines: list[str] = []
    done = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if marker in line:
                break
        done.set()

    threading.Thread(target=reader, daemon=True).start()
    assert done.wait(timeout), "".join(lines)
    return "".join(lines)


def test_demo_prints_credentials_that_log_in(tmp_path: Path) -> None:
    port = free_port()
    gateway_port = free_port()
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "vdi-broker"),
            "demo",
            "--dir",
            str(tmp_path / "demo"),
            "--port",
            str(port),
            "--gateway-port",
            str(gateway_port),
        ],
        env=clean_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        out = read_until(proc, "Press Ctrl-C", timeout=60)
        assert f"http://127.0.0.1:{port}/" in out
        found = re.findall(r"== (\w+) .*?\n\s+password:\s+(\S+)\n\s+key:\s+(\S+)", out)
        users = {name: (password, key) for name, password, key in found}
        assert set(users) == {"anna", "felix", "admin"}
        assert out.count("otpauth://totp/VDI%20Demo:") == 3
        password, key = users["anna"]
        response = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/auth/login",
            json={
                "username": "anna",
                "password": password,
                "code": oathtool_code(key, dt.datetime.now(dt.UTC)),
            },
        )
        assert response.status_code == 200, response.text
        assert response.json()["user"]["work_mode"] == "home"
        assert response.headers["set-cookie"].startswith("vdi_session=")
        # The demo's agents report their simulated desktops: anna gets one.
        csrf = response.json()["csrf_token"]
        session = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            session = httpx.post(
                f"http://127.0.0.1:{port}/api/v1/sessions",
                json={"pool": "Verwaltung"},
                cookies=response.cookies,
                headers={"X-CSRF-Token": csrf},
            )
            if session.status_code == 201:
                break
            time.sleep(0.5)
        assert session is not None and session.status_code == 201, session and session.text
        assert session.json()["session"]["host"] == "demo-host-1"
        # The demo runs the SSH gateway, and says which host key to expect.
        shown = re.search(r"host key (SHA256:\S+)", out)
        assert shown is not None
        connect = session.json()["connect"]
        assert connect["host_key_fingerprint"] == shown.group(1)
        assert connect["gateway_port"] == gateway_port
        with socket.create_connection(("127.0.0.1", gateway_port), timeout=5) as ssh:
            assert ssh.recv(64).startswith(b"SSH-2.0-")
        # The second agent starts after the first, and on a busy machine its
        # first report can come after anna's desktop.
        until(
            lambda: (
                'vdi_host_up{host="demo-host-2"} 1'
                in httpx.get(f"http://127.0.0.1:{port}/metrics").text
            ),
            what="demo-host-2 to report",
        )
        agents = psutil.Process(proc.pid).children()
        assert len(agents) == 2
        proc.send_signal(signal.SIGTERM)  # as systemd or a terminal's kill would
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
        _, alive = psutil.wait_procs(agents, timeout=10)
        assert not alive, "the demo left its agents running"
    finally:
        stop(proc)


def test_demo_takes_its_ports_and_directory_from_the_environment(tmp_path: Path) -> None:
    port, gateway_port = free_port(), free_port()
    env = clean_env(
        {
            "VDI_DATA_DIR": str(tmp_path / "from-env"),
            "VDI_HTTP_PORT": str(port),
            "VDI_GATEWAY_PORT": str(gateway_port),
        }
    )
    proc = subprocess.Popen(
        [str(VENV_BIN / "vdi-broker"), "demo"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        out = read_until(proc, "Press Ctrl-C", timeout=60)
        assert f"http://127.0.0.1:{port}/" in out
        assert f"ssh://127.0.0.1:{gateway_port}" in out
        assert (tmp_path / "from-env" / "vdi-broker.sqlite3").exists()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        stop(proc)
