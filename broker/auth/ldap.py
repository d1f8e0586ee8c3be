"""Login against LDAP / Active Directory: search, then bind as the user.

The broker binds with a service account, searches the user by name (the filter
escapes the name), then binds as the user's DN with the password typed: only
the directory ever sees it. The user's groups decide role, department, work
mode, priority class and critical team (`map_groups`, pure); the broker keeps a
local row for them (auth_source "ldap", no password hash) so sessions, lockout
and TOTP work as for local users. TOTP stays with the broker.

ldap3 is synchronous; every directory call runs in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.config import LdapSettings
from broker.domain import Role, WorkMode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DirectoryUser:
    dn: str
    name: str
    groups: frozenset[str]  # group DNs, lower case
    department: str | None = None  # the department attribute, if any


@dataclass(frozen=True)
class Mapped:
    role: Role
    department: str
    work_mode: WorkMode
    priority_class: str | None
    team: str | None


def _lower(dns: Iterable[str]) -> set[str]:
    return {dn.strip().lower() for dn in dns}


def _first(groups: frozenset[str], mapping: dict[str, str]) -> str | None:
    """The value of the first configured group (in the settings' order) the user is in."""
    for dn, value in mapping.items():
        if dn.strip().lower() in groups:
            return value
    return None


def map_groups(user: DirectoryUser, cfg: LdapSettings) -> Mapped | None:
    """What the directory says about a user, or None if they may not log in.

    With admin or staff groups configured, a user must be in one of them.
    """
    admins, staff = _lower(cfg.admin_groups), _lower(cfg.staff_groups)
    is_admin = bool(admins & user.groups)
    if (admins or staff) and not is_admin and not (staff & user.groups):
        return None
    department = _first(user.groups, cfg.department_groups) or user.department
    if not department:
        return None
    return Mapped(
        role=Role.ADMIN if is_admin else Role.STAFF,
        department=department,
        work_mode=WorkMode.FIELD if _lower(cfg.field_groups) & user.groups else WorkMode.HOME,
        priority_class=_first(user.groups, cfg.priority_groups),
        team=_first(user.groups, cfg.team_groups),
    )


class Directory:
    """The LDAP server, as the login flow uses it."""

    def __init__(self, cfg: LdapSettings) -> None:
        import ldap3  # imported only where a directory is configured

        self._ldap3 = ldap3
        self.cfg = cfg
        tls = None
        if cfg.url.startswith("ldaps://") or cfg.start_tls:
            tls = ldap3.Tls(
                validate=ssl.CERT_REQUIRED,
                ca_certs_file=str(cfg.ca_file) if cfg.ca_file else None,
                version=ssl.PROTOCOL_TLS_CLIENT,
            )
        # ldap3 packs timeouts into socket options as whole seconds.
        self._timeout = max(1, math.ceil(cfg.timeout_s))
        self._server = ldap3.Server(
            cfg.url,
            use_ssl=cfg.url.startswith("ldaps://"),
            tls=tls,
            connect_timeout=self._timeout,
            get_info=ldap3.NONE,
        )
        self._bind_password = _read_secret(cfg.bind_password_file)

    def _connection(self, user: str | None, password: str | None) -> Any:
        conn = self._ldap3.Connection(
            self._server,
            user=user,
            password=password,
            receive_timeout=self._timeout,
            raise_exceptions=False,
            read_only=True,
        )
        conn.open()
        if self.cfg.start_tls:
            conn.start_tls()
        return conn

    def _search(self, username: str) -> DirectoryUser | None:
        from ldap3.utils.conv import escape_filter_chars

        conn = self._connection(self.cfg.bind_dn or None, self._bind_password)
        try:
            if not conn.bind():
                log.error(
                    "LDAP service bind as %r failed: %s",
                    self.cfg.bind_dn,
                    conn.result.get("description"),
                )
                return None
            attributes = [self.cfg.group_attribute, self.cfg.department_attribute]
            query = self.cfg.user_filter.format(username=escape_filter_chars(username))
            conn.search(self.cfg.user_base, query, attributes=attributes, size_limit=2)
            entries = list(conn.entries)
            if len(entries) != 1:
                return None  # unknown, or ambiguous: never guess
            entry = entries[0]
            groups = _values(entry, self.cfg.group_attribute)
            department = _values(entry, self.cfg.department_attribute)
            return DirectoryUser(
                dn=entry.entry_dn,
                name=username,
                groups=frozenset(g.lower() for g in groups),
                department=department[0] if department else None,
            )
        finally:
            conn.unbind()

    def _check(self, username: str, password: str) -> DirectoryUser | None:
        found = self._search(username)
        if found is None or not password:  # an empty password is an anonymous bind
            return None
        conn = self._connection(found.dn, password)
        try:
            return found if conn.bind() else None
        finally:
            conn.unbind()

    async def authenticate(self, username: str, password: str) -> DirectoryUser | None:
        """The user if the directory knows them and the password binds, else None."""
        return await asyncio.get_running_loop().run_in_executor(
            None, self._check, username, password
        )


def _values(entry: object, attribute: str) -> list[str]:
    try:
        return [str(v) for v in getattr(entry, attribute).values]
    except Exception:  # ldap3 raises its own error for an attribute the entry lacks
        return []


def _read_secret(path: Path | None) -> str | None:
    if path is None:
        return None
    return path.read_text(encoding="utf-8").strip()
