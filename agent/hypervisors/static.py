"""Desktops listed in a TOML file: physical PCs and terminal servers.

    [[desktop]]
    name = "pc-bauamt-01"
    address = "10.0.0.21"
    port = 3389          # optional; 3389 for rdp, 5900 for vnc
    protocol = "rdp"     # rdp (default), vnc or tcp
    pool = "Bauamt"      # optional; else the agent's --pool

They are assumed to be on; the agent cannot switch them, so power actions fail
with a clear error. Their probes still show whether they answer.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from agent.hypervisors.base import DEFAULT_PORTS, ConsoleProtocol, Desktop, HypervisorError
from agent.protocol_base import (
    LABEL_MAX_LENGTH,
    NAME_MAX_LENGTH,
    NAME_PATTERN,
    ActionKind,
    PowerState,
    has_control,
    ip_literal,
)
from agent.textfile import Unreadable, read_utf8

_NAME_RE = re.compile(NAME_PATTERN)
_KEYS = frozenset({"name", "address", "port", "protocol", "pool"})


class StaticListError(ValueError):
    """The desktop list is wrong; the message says where and what."""


def _entry(index: int, raw: Any) -> Desktop:
    where = f"desktop #{index + 1}"
    if not isinstance(raw, dict):
        raise StaticListError(f"{where}: expected a table")
    unknown = set(raw) - _KEYS
    if unknown:
        raise StaticListError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    name = raw.get("name")
    if not isinstance(name, str) or len(name) > NAME_MAX_LENGTH or not _NAME_RE.fullmatch(name):
        raise StaticListError(
            f"{where}: name must be 1 to {NAME_MAX_LENGTH} characters A-Z a-z 0-9 . _ -"
        )
    where = f"desktop {name}"
    try:
        protocol = ConsoleProtocol(raw.get("protocol", "rdp"))
    except ValueError:
        choices = ", ".join(p.value for p in ConsoleProtocol)
        raise StaticListError(f"{where}: protocol must be one of {choices}") from None
    if "address" not in raw:
        raise StaticListError(f"{where}: address is missing (the desktop's IP address)")
    try:
        address = raw["address"]
        if not isinstance(address, str):
            raise ValueError(f"address {address!r} is not a string")
        address = ip_literal(address)
    except ValueError as exc:
        raise StaticListError(f"{where}: {exc}") from None
    port = raw.get("port", DEFAULT_PORTS.get(protocol))
    if port is None:
        raise StaticListError(f"{where}: port is missing ({protocol} has no default port)")
    # TOML's true is a Python int (1): it must not become port 1.
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise StaticListError(f"{where}: port must be a number from 1 to 65535")
    pool = raw.get("pool")
    if pool is not None and (
        not isinstance(pool, str) or not 1 <= len(pool) <= LABEL_MAX_LENGTH or has_control(pool)
    ):
        raise StaticListError(
            f"{where}: pool must be 1 to {LABEL_MAX_LENGTH} characters, none a control character"
        )
    return Desktop(name, PowerState.RUNNING, pool, address, port, protocol)


def parse_static_list(text: str) -> list[Desktop]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StaticListError(f"not valid TOML: {exc}") from None
    # Anything beside [[desktop]] is a slip ([[desktops]], [[Desktop]], a key above
    # the first table) that would otherwise list no desktops at all, and the broker
    # would mark every desktop this agent reported before as missing.
    unknown = set(document) - {"desktop"}
    if unknown:
        raise StaticListError(
            f"unknown keys {', '.join(sorted(unknown))}: each desktop is a [[desktop]] table"
        )
    # A file that lists nothing (emptied by accident, or by a tool that failed
    # half-way) would also leave every desktop missing; a host that really has
    # none says so.
    if "desktop" not in document:
        raise StaticListError(
            "lists no desktops: each desktop is a [[desktop]] table; "
            "write 'desktop = []' for a list that is empty on purpose"
        )
    entries = document["desktop"]
    if not isinstance(entries, list):
        raise StaticListError("'desktop' must be an array of tables ([[desktop]])")
    desktops = [_entry(i, raw) for i, raw in enumerate(entries)]
    seen: set[str] = set()
    for d in desktops:
        if d.name in seen:
            raise StaticListError(f"desktop {d.name} is listed twice")
        seen.add(d.name)
    return desktops


class StaticHypervisor:
    kind = "static"

    def __init__(self, desktops: list[Desktop]) -> None:
        self._desktops = desktops

    @classmethod
    def from_file(cls, path: Path) -> StaticHypervisor:
        try:
            text = read_utf8(path)
        except Unreadable as exc:
            raise StaticListError(str(exc)) from None
        try:
            return cls(parse_static_list(text))
        except StaticListError as exc:
            raise StaticListError(f"{path}: {exc}") from None

    async def desktops(self) -> list[Desktop]:
        return list(self._desktops)

    async def perform(self, action: ActionKind, desktop: str) -> PowerState:
        raise HypervisorError(f"{action} is not supported for static desktops")

    async def close(self) -> None:
        return None
