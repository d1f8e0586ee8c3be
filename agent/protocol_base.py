"""The parts of the report protocol that need no pydantic.

agent.protocol re-exports all of these. They live apart so that the agent's
report loop can use the protocol's names and limits without importing pydantic:
pydantic with the protocol's models adds about 10 MB to the agent's resident
memory of about 29 MB, whose goal is at most 1.5 times node_exporter's ~21 MB
(bench/bench_agent.py).
"""

from __future__ import annotations

from enum import StrEnum

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})

MAX_DESKTOPS = 5000
MAX_DISKS = 64
MAX_ACTIONS = 1000

# Desktop and host names: what libvirt, DNS labels and Prometheus handle alike.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
NAME_MAX_LENGTH = 128
LABEL_MAX_LENGTH = 64
ACTION_ID_MAX_LENGTH = 64
ERROR_MAX_LENGTH = 512
MOUNT_MAX_LENGTH = 256
MAX_INTERVAL_S = 3600


class PowerState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    PAUSED = "paused"
    STARTING = "starting"
    STOPPING = "stopping"
    CRASHED = "crashed"
    UNKNOWN = "unknown"


class ActionKind(StrEnum):
    START = "start"
    STOP = "stop"  # graceful shutdown
    REBOOT = "reboot"  # graceful restart
    RESET = "reset"  # hard reset; floating desktops are reset before reuse
