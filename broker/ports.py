"""Free TCP ports for servers that bind a moment later: the demo's portal and
gateway, and the brokers, agents and sshd that tests and benchmarks start."""

from __future__ import annotations

import random
import socket
from pathlib import Path

# Linux's range for source ports of outgoing connections (and for bind to 0).
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Where the kernel does not say: Linux's default start. Windows and macOS begin
# theirs at 49152, above it.
EPHEMERAL_START = 32768
LOWEST = 20000

_handed_out: set[int] = set()
_random = random.SystemRandom()


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on the port now. With SO_REUSEADDR, as the
    servers set it (uvicorn, asyncio, sshd): connections of a server stopped a
    moment ago, left in TIME_WAIT, do not keep it from listening again."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def ephemeral_start() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return EPHEMERAL_START


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on, chosen at random below the ephemeral range.

    bind(0) would pick a port from that range, and until the server binds it,
    the next bind(0) elsewhere (a test running alongside) may get the same
    port, and so may an outgoing connection once Linux runs short of its
    preferred source ports: the server then fails with "address already in
    use". Below the range only servers bind, and a random choice keeps
    parallel processes apart. A port is handed out once per process."""
    top = max(ephemeral_start(), LOWEST + 1000)
    for _ in range(1000):
        port = _random.randrange(LOWEST, top)
        if port not in _handed_out and port_is_free(host, port):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port on {host} from {LOWEST} to {top - 1}")
