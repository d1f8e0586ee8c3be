"""The parts of the report protocol that need no pydantic.

agent.protocol re-exports all of these. They live apart so that the agent's
report loop can use the protocol's names and limits without importing pydantic:
pydantic with the protocol's models adds about 10 MB to the agent's resident
memory of about 29 MB, whose goal is at most 1.5 times node_exporter's ~21 MB
(bench/bench_agent.py).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from enum import StrEnum

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})

MAX_DESKTOPS = 5000
# The collector status of the hypervisor's desktop listing. When it failed, the
# report's desktops are only those the agent knew before (with an unknown
# state), or none after a restart: the broker must not take a desktop left out
# for one that vanished.
HYPERVISOR_COLLECTOR = "hypervisor"
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
# The broker stores a desktop's client connections in a 32-bit column.
MAX_CONNECTIONS = 2**31 - 1

# Free text in a report (agent version, error texts, mounts, pool and collector
# names, action ids) holds no control characters (Unicode category Cc): PostgreSQL
# refuses NUL in text, and the rest would end up in metric labels and log lines.
# The range, as it goes between brackets in a regular expression:
CONTROL_CHARACTERS = r"\x00-\x1f\x7f-\x9f"
_CONTROL_RE = re.compile(f"[{CONTROL_CHARACTERS}]")


def has_control(text: str) -> bool:
    """Whether `text` holds a control character, which no report text may hold."""
    return _CONTROL_RE.search(text) is not None


def one_line(text: str, limit: int) -> str:
    """`text` as report text: control characters (line breaks, tabs, NUL) become
    spaces, and it is cut to `limit` characters."""
    return _CONTROL_RE.sub(" ", text)[:limit]


def ip_literal(value: str) -> str:
    """A desktop endpoint's address in canonical form; ValueError for anything else.

    Endpoints are IP literals: the broker never resolves names. Dotted-quad IPv4 in
    canonical form takes a C fast path (every report carries one per desktop);
    anything else goes through `ipaddress`, which refuses names and odd spellings
    ("127.1", "0x7f.0.0.1", "010.0.0.1") alike. A scoped IPv6 address
    ("fe80::1%eth0") is refused too: its zone names an interface of the host it was
    written on, which means nothing to the broker's gateway.
    """
    try:
        if socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, value)) == value:
            return value
    except OSError:
        pass
    address = ipaddress.ip_address(value)
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        raise ValueError(f"{value!r} is a scoped address; give one without a zone (%...)")
    return str(address)


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
