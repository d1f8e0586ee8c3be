"""Creating the directories the configuration names (the data directory, the
SQLite file's directory), with an error a person can act on instead of a
traceback."""

from __future__ import annotations

from pathlib import Path


class DirectoryError(Exception):
    """A configured directory that cannot be created."""


def ensure_dir(path: Path, what: str, *, mode: int = 0o777) -> None:
    """Create `path` and its parents if missing; `what` names it in the error."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=mode)
    except OSError as exc:
        raise DirectoryError(f"cannot create {what} {path}: {exc.strerror or exc}") from None
