"""Reading the kernel's small text files (/proc, /sys), which collectors read every cycle."""

from __future__ import annotations

from pathlib import Path


def read_kernel_file(path: Path) -> str:
    """The whole text of a /proc or /sys file. Read as bytes without buffering:
    Path.read_text sets up a buffer and a text decoder per open, which costs more
    than the read itself for files this small (measured with bench/bench_agent.py)."""
    with path.open("rb", buffering=0) as raw:
        return raw.read().decode("ascii", "replace")
