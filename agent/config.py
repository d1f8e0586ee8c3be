"""The agent's settings: defaults, then a TOML file (--config), then the command
line. The file's keys are the long option names with underscores:

    broker = "https://broker.example.org"
    token_file = "/etc/vdi-agent/token"
    hypervisor = "libvirt"
    pool = "Verwaltung"
    interval = 30
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.hypervisors.base import ConsoleProtocol
from agent.protocol_base import (
    LABEL_MAX_LENGTH,
    MAX_DESKTOPS,
    MAX_INTERVAL_S,
    NAME_MAX_LENGTH,
    NAME_PATTERN,
    has_control,
    ip_literal,
)
from agent.textfile import Unreadable, read_utf8

HYPERVISORS = ("libvirt", "static", "simulated")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def default_state_dir() -> Path:
    """systemd's StateDirectory= when run as a service, else the XDG state home."""
    systemd = os.environ.get("STATE_DIRECTORY")
    if systemd:
        return Path(systemd.split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "vdi-agent"


@dataclass(frozen=True)
class AgentConfig:
    broker: str | None = None
    token_file: Path | None = None
    hypervisor: str = "libvirt"
    libvirt_uri: str = "qemu:///system"
    # Where the broker's gateway reaches consoles that listen on all interfaces;
    # None: this host's own address towards the broker.
    console_address: str | None = None
    static_desktops: Path | None = None
    simulated_desktops: int = 10
    simulated_protocol: str = ConsoleProtocol.RDP.value
    simulated_latency: float = 0.0
    simulated_hang: int = 0
    simulated_boot_delay: float = 0.0
    pool: str | None = None
    interval: float = 30.0
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    host_name: str = field(default_factory=socket.gethostname)
    state_dir: Path = field(default_factory=default_state_dir)
    probe_timeout: float = 2.0
    capacity: int | None = None
    log_level: str = "INFO"


_PATHS = frozenset({"token_file", "static_desktops", "state_dir"})
_INTS = frozenset({"simulated_desktops", "simulated_hang", "metrics_port", "capacity"})
_NUMBERS = frozenset({"simulated_latency", "simulated_boot_delay", "interval", "probe_timeout"})
_FIELDS = {f.name for f in dataclasses.fields(AgentConfig)}


def _wrong_type(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if key in _PATHS:
        return not isinstance(value, Path)
    if key in _INTS:
        return not isinstance(value, int)
    if key in _NUMBERS:
        return not isinstance(value, int | float)
    return not isinstance(value, str)


class ConfigError(ValueError):
    pass


def _problems(c: AgentConfig) -> list[str]:
    problems = []
    if c.hypervisor not in HYPERVISORS:
        problems.append(f"hypervisor must be one of {', '.join(HYPERVISORS)}")
    if c.hypervisor == "static" and c.static_desktops is None:
        problems.append("the static hypervisor needs --static-desktops FILE")
    if c.simulated_protocol not in (ConsoleProtocol.RDP, ConsoleProtocol.VNC):
        problems.append("simulated_protocol must be rdp or vnc")
    if not 0 <= c.simulated_desktops <= MAX_DESKTOPS:
        problems.append(f"simulated_desktops must be 0 to {MAX_DESKTOPS}")
    if not 0 <= c.simulated_hang <= c.simulated_desktops:
        problems.append("simulated_hang must be 0 to the number of simulated desktops")
    if c.simulated_latency < 0 or c.simulated_boot_delay < 0:
        problems.append("simulated latency and boot delay must not be negative")
    if c.pool is not None and (not 1 <= len(c.pool) <= LABEL_MAX_LENGTH or has_control(c.pool)):
        problems.append(
            f"pool must be 1 to {LABEL_MAX_LENGTH} characters, none a control character"
        )
    if not 0 < c.interval <= MAX_INTERVAL_S:
        problems.append(f"interval must be above 0 and at most {MAX_INTERVAL_S} seconds")
    if not 0 < c.probe_timeout <= 60:
        problems.append("probe_timeout must be above 0 and at most 60 seconds")
    if c.metrics_port is not None and not 0 <= c.metrics_port <= 65535:
        problems.append("metrics_port must be 0 to 65535")
    try:
        ipaddress.ip_address(c.metrics_address)
    except ValueError:
        problems.append("metrics_address must be an IP address")
    try:
        if c.console_address is not None:
            ip_literal(c.console_address)  # reported as desktops' address
    except ValueError:
        problems.append("console_address must be an IP address without a zone (%...)")
    if len(c.host_name) > NAME_MAX_LENGTH or not re.fullmatch(NAME_PATTERN, c.host_name):
        problems.append("host_name must be 1 to 128 characters A-Z a-z 0-9 . _ - (--host-name)")
    if c.capacity is not None and c.capacity < 0:
        problems.append("capacity must not be negative")
    if c.log_level.upper() not in LOG_LEVELS:
        problems.append(f"log_level must be one of {', '.join(LOG_LEVELS)}")
    return problems


def _from_file(path: Path) -> dict[str, Any]:
    try:
        raw = tomllib.loads(read_utf8(path))
    except Unreadable as exc:
        raise ConfigError(str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    unknown = set(raw) - _FIELDS
    if unknown:
        raise ConfigError(f"{path}: unknown settings {', '.join(sorted(unknown))}")
    return {k: Path(v) if k in _PATHS and isinstance(v, str) else v for k, v in raw.items()}


def load_config(file: Path | None, overrides: Mapping[str, Any]) -> AgentConfig:
    """Defaults, then the file, then the overrides that are not None."""
    values = _from_file(file) if file is not None else {}
    values.update({k: v for k, v in overrides.items() if v is not None and k in _FIELDS})
    wrong = sorted(k for k, v in values.items() if _wrong_type(k, v))
    if wrong:
        raise ConfigError(f"wrong type of value for {', '.join(wrong)}")
    config = AgentConfig(**values)
    problems = _problems(config)
    if problems:
        raise ConfigError("; ".join(problems))
    return config
