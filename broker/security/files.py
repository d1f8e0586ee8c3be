"""Files that hold secrets: created with mode 0600, refused when others can read them."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class KeyFileError(Exception):
    """A key file is missing, malformed or readable by others."""


def create_private(path: Path, data: bytes) -> None:
    """Write a new file only its owner can read; never overwrites an existing one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def ensure_private(path: Path, what: str) -> None:
    """Refuse a secret file that its group or others may read or write."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{what} {path} is readable by others (mode {stat.S_IMODE(mode):o}); "
            f"run: chmod 600 {path}"
        )
