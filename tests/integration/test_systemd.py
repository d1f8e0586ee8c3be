"""The systemd units pass systemd-analyze, and both programs really send READY=1."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from broker.ports import free_port
from tests.support.processes import REPO, VENV_BIN, clean_env, new_broker_env, stop, vdi_broker

UNITS = ("vdi-broker.service", "vdi-agent.service")


@pytest.fixture
def units(tmp_path: Path) -> Path:
    """The units as shipped, with ExecStart pointing at this checkout's programs
    (verify insists the executable exists)."""
    for name in UNITS:
        text = (REPO / "systemd" / name).read_text()
        assert "ExecStart=/opt/vdi-broker/bin/" in text
        (tmp_path / name).write_text(text.replace("/opt/vdi-broker/bin/", f"{VENV_BIN}/"))
    return tmp_path


def test_units_verify_cleanly(units: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(units / u) for u in UNITS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.parametrize(
    ("unit", "limit"), [("vdi-broker.service", 3.0), ("vdi-agent.service", 3.0)]
)
def test_exposure_is_low(units: Path, unit: str, limit: float) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(units / unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match, result.stdout[-500:]
    assert float(match.group(1)) < limit


def test_hardening_settings_are_present() -> None:
    for unit in UNITS:
        text = (REPO / "systemd" / unit).read_text()
        for line in (
            "Type=notify",
            "Restart=on-failure",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "PrivateDevices=yes",
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectKernelLogs=yes",
            "SystemCallFilter=@system-service",
            "CapabilityBoundingSet=\n",
            "StateDirectory=",
            "ConfigurationDirectory=",
            "RestrictAddressFamilies=",
        ):
            assert line in text, (unit, line)
    # The gateway holds sockets per tunnel: systemd's default 1024 is too few.
    assert "LimitNOFILE=65536" in (REPO / "systemd" / "vdi-broker.service").read_text()
    assert "SupplementaryGroups=libvirt" in (REPO / "systemd" / "vdi-agent.service").read_text()


def notify_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    return sock, path


def test_broker_tells_systemd_it_is_ready(tmp_path: Path) -> None:
    sock, path = notify_socket(tmp_path)
    port = free_port()
    env = clean_env(
        {
            "VDI_DATA_DIR": str(tmp_path / "data"),
            "VDI_HTTP_PORT": str(port),
            "VDI_GATEWAY_ENABLED": "false",
            "NOTIFY_SOCKET": path,
        }
    )
    proc = subprocess.Popen([str(VENV_BIN / "vdi-broker"), "serve"], env=env)
    try:
        message = sock.recv(256).decode()
        assert message == "READY=1"
        # Ready means ready: the port answers at once.
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        stop(proc)
        sock.close()


def test_agent_tells_systemd_it_is_ready(tmp_path: Path) -> None:
    sock, path = notify_socket(tmp_path)
    env = new_broker_env(tmp_path / "data")
    token = json.loads(vdi_broker("host", "add", "vhost01", "--json", env=env).stdout)["token"]
    (tmp_path / "token").write_text(token)
    (tmp_path / "token").chmod(0o600)
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "vdi-agent"),
            "run",
            "--broker",
            f"http://127.0.0.1:{free_port()}",
            "--token-file",
            str(tmp_path / "token"),
            "--hypervisor",
            "simulated",
            "--simulated-desktops",
            "1",
            "--state-dir",
            str(tmp_path / "state"),
            "--host-name",
            "vhost01",
        ],
        env={**clean_env(), "NOTIFY_SOCKET": path},
    )
    try:
        assert sock.recv(256).decode() == "READY=1"
    finally:
        stop(proc)
        sock.close()
