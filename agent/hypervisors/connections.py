"""Established TCP connections per local port, from the kernel's socket tables.

A console that listens on the host (libvirt's VNC or SPICE) shows its clients as
established sockets whose local port is the console port. Reading
/proc/net/tcp{,6} directly is cheap and needs no privileges, unlike mapping
sockets to processes.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from agent.procfs import read_kernel_file

_ESTABLISHED = "01"


def established_per_port(table: str) -> Counter[int]:
    """Count ESTABLISHED sockets by local port in one /proc/net/tcp-format table."""
    counts: Counter[int] = Counter()
    for line in table.splitlines()[1:]:  # the first line is the column header
        fields = line.split()
        if len(fields) < 4 or fields[3] != _ESTABLISHED:
            continue
        _, _, port = fields[1].rpartition(":")
        try:
            counts[int(port, 16)] += 1
        except ValueError:
            continue
    return counts


def read_established(proc: Path = Path("/proc")) -> Counter[int]:
    """Established connections per local port over IPv4 and IPv6."""
    counts: Counter[int] = Counter()
    for name in ("tcp", "tcp6"):
        try:
            counts += established_per_port(read_kernel_file(proc / "net" / name))
        except FileNotFoundError:  # no IPv6 in this kernel or namespace
            continue
    return counts
