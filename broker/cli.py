"""`vdi-broker`: serve, demo, database and administration commands.

Administration commands work on the database directly (like `manage.py`), so
they also work while no broker runs. Every list command takes `--json`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import io
import json
import logging
import os
import shlex
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy.engine import make_url

from broker import __version__, fleet
from broker.audit import log as audit
from broker.auth import enrolment
from broker.cli_numbers import bounded_int, decimal, int_or_none, whole_number
from broker.config import (
    ConfigFileError,
    Settings,
    UnknownVariable,
    describe_invalid,
    load_settings,
)
from broker.dirs import DirectoryError
from broker.domain import HostState, PoolType, Protocol, Role, WorkMode
from broker.errors import InvalidInput, NotFound, VdiError
from broker.hosts import service as hosts
from broker.names import normalise_user_name
from broker.policy import store as policies
from broker.pools import service as pools
from broker.runtime import Runtime, open_runtime
from broker.security.files import KeyFileError
from broker.security.rotation import rotate_key
from broker.sessions import service as sessions
from broker.store import migrate
from broker.store.backup import backup_sqlite
from broker.store.db import sqlite_file
from broker.store.db_errors import database_down, driver_error, login_refused
from broker.store.tables import Session
from broker.text import comma_separated, did_you_mean, encodable
from broker.tls_files import TlsFileError
from broker.users import service as users

Handler = Callable[[Runtime, argparse.Namespace], Awaitable[int]]


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


# -- output -------------------------------------------------------------------


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], out: TextIO) -> None:
    """A plain table a person can read; empty cells are '-'."""
    if not rows:
        out.write("(none)\n")
        return

    def cell(value: Any) -> str:
        if value is None or value == "":
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, list):
            return ",".join(str(v) for v in value) or "-"
        return str(value)

    table = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(columns)]
    out.write("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    out.write("\n")
    for r in table:
        out.write("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n")


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def emit(rows: list[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    if as_json:
        print_json(rows)
    else:
        print_table(rows, columns, sys.stdout)


# -- parsing --------------------------------------------------------------------


def add_subject(parser: argparse.ArgumentParser) -> None:
    """The required `--department D | --user U` of policies and entitlements."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--department", metavar="D", help="a department")
    group.add_argument("--user", metavar="U", help="one user")


def subject(args: argparse.Namespace) -> tuple[str, str]:
    """("department", D) or ("user", U), from the options of add_subject()."""
    if args.user is not None:
        return "user", args.user
    return "department", args.department


def _with_close_matches(unknown: Iterable[str], known: set[str]) -> str:
    """The names, each with the known one it is most likely a typo of."""
    return ", ".join(name + did_you_mean(name, known) for name in unknown)


def unknown_departments_note(named: Iterable[str], known: set[str]) -> str | None:
    """A note on departments no user is in: a typo, most likely, or users that
    are not added yet. Rules for them are stored but apply to nobody."""
    unknown = sorted({n.strip() for n in named} - known)
    if not unknown:
        return None
    noun = "department" if len(unknown) == 1 else "departments"
    return (
        f"Note: no user is in {noun} {_with_close_matches(unknown, known)}. Check the"
        " spelling; the rule applies to users added there later."
    )


def unused_priority_class_note(name: str, in_use: set[str]) -> str | None:
    """A note on a priority class no user has. Classes match exactly, upper and
    lower case too: "krisenstab" declared for users of "Krisenstab" would leave
    the crisis team without the reserve in the emergency it is for."""
    if name in in_use:
        return None
    return (
        f"Note: no user has priority class {_with_close_matches([name], in_use)}. Classes"
        " match exactly, upper and lower case too; users given it later are served."
    )


def undeclared_priority_class_note(name: str, declared: set[str]) -> str | None:
    """A note on a user's priority class that is not declared: a typo, most
    likely ("krisenstab" for "Krisenstab"), or a class not added yet. Until it
    is declared, the user is not served from pools' reserves."""
    if name in declared:
        return None
    return (
        f"Note: priority class {_with_close_matches([name], declared)} is not declared, so"
        " this user is not served from pools' reserves. Classes match exactly, upper and"
        f" lower case too; `vdi-broker policy priority add {shlex.quote(name)}` declares it."
    )


async def note_unknown_departments(rt: Runtime, named: Sequence[str]) -> None:
    """Print unknown_departments_note() to stderr (stdout stays for --json)."""
    if not named:
        return  # a pool open to everybody names none: nothing to look up
    note = unknown_departments_note(named, await users.departments(rt))
    if note:
        print(note, file=sys.stderr)


# -- users ----------------------------------------------------------------------


NOT_UTF8 = "set the terminal, or the file it comes from, to UTF-8"


def read_password(args: argparse.Namespace) -> str:
    try:
        password = _read_password(args)
        password.encode("utf-8")
    except UnicodeError:
        # Bytes that are not UTF-8: refused by the decoder, or kept as lone
        # surrogates that password hashing cannot encode. No part of it is shown.
        raise InvalidInput(f"The password is not UTF-8 text; {NOT_UTF8}.") from None
    return password


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise InvalidInput("No password on standard input.")
        return password
    if not sys.stdin.isatty():
        raise InvalidInput("No terminal to ask for the password; use --password-stdin.")
    try:
        first = getpass.getpass("Password: ")
        again = getpass.getpass("Password again: ")
    except EOFError:
        # Ctrl-D at the prompt: getpass raises rather than return "". A person
        # who gives up typing gets a line, not a traceback; nothing is added.
        print(file=sys.stderr)  # past the prompt, which has no newline of its own
        raise InvalidInput("No password given; nothing was added.") from None
    if first != again:
        raise InvalidInput("The two passwords differ.")
    return first


async def user_add(rt: Runtime, args: argparse.Namespace) -> int:
    new = users.NewUser(
        name=args.name,
        department=args.department,
        role=Role(args.role),
        work_mode=WorkMode(args.work_mode),
        priority_class=args.priority,
        team=args.team,
    )
    # Fail on a bad or taken name before asking for a password, not after it was
    # typed twice. (users.add refuses a taken name all the same, should one be
    # added in between.)
    await users.check_name_free(rt, users.validate(new).name)
    user = await users.add(rt, new, read_password(args), actor())
    print(f"User {user.name} added ({user.department}, {user.role}, {user.work_mode}).")
    print(f"Next: vdi-broker user totp-enroll {user.name}  (or the user enrols at first login)")
    if user.priority_class:
        declared = {c["name"] for c in await policies.list_priority_classes(rt)}
        note = undeclared_priority_class_note(user.priority_class, declared)
        if note:
            print(note, file=sys.stderr)
    return 0


async def user_list(rt: Runtime, args: argparse.Namespace) -> int:
    now = rt.clock.now()
    rows = [users.as_dict(u, now) for u in await users.list_all(rt)]
    emit(
        rows,
        [
            "name",
            "department",
            "role",
            "work_mode",
            "priority_class",
            "team",
            "totp_enrolled",
            "locked",
        ],
        args.json,
    )
    return 0


async def user_totp_enroll(rt: Runtime, args: argparse.Namespace) -> int:
    # The name as stored, also in the header: the person handing the secret over
    # reads it there, and " MARIA" is not an account the otpauth URI names.
    name = normalise_user_name(args.name)
    result = await enrolment.admin_enrol(rt, name, actor(), replace=args.replace)
    print(f"TOTP secret for {name} (hand it over in person; it is not shown again):\n")
    if encodable(result.qr_text, sys.stdout.encoding or "utf-8"):
        print(result.qr_text)
    else:
        # The QR code is block characters, which a terminal that is not UTF-8
        # cannot show: main() has them escaped, a picture nobody can scan. The
        # secret, stored already and shown only here, is in the URI and key
        # below, which are ASCII.
        print("(No QR code: this terminal is not UTF-8. Type the manual key below.)\n")
    print(f"otpauth URI: {result.otpauth_uri}")
    print(f"Manual key:  {result.secret}\n")
    print("Recovery codes (each works once):")
    for code in result.recovery_codes:
        print(f"  {code}")
    return 0


async def user_lock(rt: Runtime, args: argparse.Namespace) -> int:
    user = await users.set_locked(rt, args.name, True, actor())
    print(f"User {user.name} is locked and logged out everywhere; open desktop sessions are ended.")
    return 0


async def user_unlock(rt: Runtime, args: argparse.Namespace) -> int:
    user = await users.set_locked(rt, args.name, False, actor())
    print(f"User {user.name} is unlocked.")
    return 0


async def user_reset_totp(rt: Runtime, args: argparse.Namespace) -> int:
    user = await users.reset_totp(rt, args.name, actor())
    print(f"TOTP of {user.name} is reset; the next login asks to enrol a new authenticator.")
    return 0


# -- pools and hosts --------------------------------------------------------------


async def pool_add(rt: Runtime, args: argparse.Namespace) -> int:
    departments = comma_separated(args.departments or "")
    if args.departments is not None and not departments:
        # `--departments ""` or `,,`: meant to restrict, would open to everybody.
        raise InvalidInput("--departments names no department.")
    pool = await pools.add(
        rt,
        pools.NewPool(
            name=args.name,
            type=PoolType(args.type),
            protocol=Protocol(args.protocol),
            max_sessions=args.max_sessions,
            departments=departments,
            field=args.field,
        ),
        actor(),
    )
    print(f"Pool {pool.name} added: {pool.type}, {pool.protocol}, {licences(pool.max_sessions)}.")
    await note_unknown_departments(rt, departments)
    if not departments:
        print(
            f"It is open to everybody; `vdi-broker pool entitle {pool.name} --department D`"
            " restricts it."
        )
    return 0


async def pool_list(rt: Runtime, args: argparse.Namespace) -> int:
    emit(
        await pools.list_all(rt),
        [
            "name",
            "type",
            "protocol",
            "max_sessions",
            "open_sessions",
            "priority_reserve",
            "spare_desktops",
            "field",
            "departments",
            "users",
        ],
        args.json,
    )
    return 0


def licences(n: int) -> str:
    return f"{n} licence" if n == 1 else f"{n} licences"


def describe_pool(pool: dict[str, Any]) -> str:
    def seconds(value: int | None) -> str:
        return "none" if value is None else f"{value} s"

    spare = "unmanaged" if pool["spare_desktops"] is None else pool["spare_desktops"]
    return (
        f"Pool {pool['name']}: {licences(pool['max_sessions'])}, priority reserve "
        f"{pool['priority_reserve']:g}, spare desktops {spare}, disconnect timeout "
        f"{seconds(pool['disconnect_timeout_s'])}, maximum session time "
        f"{seconds(pool['max_session_s'])}, idle timeout {seconds(pool['idle_timeout_s'])}, "
        f"{'a field pool' if pool['field'] else 'not a field pool'}."
    )


def describe_entitlements(pool: dict[str, Any]) -> str:
    parts = [
        f"{kind} {', '.join(pool[key])}"
        for kind, key in (("departments", "departments"), ("users", "users"))
        if pool[key]
    ]
    if not parts:
        return f"Pool {pool['name']} has no entitlements: it is open to everybody."
    return f"Pool {pool['name']} is open to {'; '.join(parts)}."


async def pool_set(rt: Runtime, args: argparse.Namespace) -> int:
    changes = pools.PoolChanges(
        **{f.name: getattr(args, f.name) for f in fields(pools.PoolChanges)}
    )
    pool = await pools.update(rt, args.name, changes, actor())
    print(describe_pool(pool))
    over = pool["open_sessions"] - pool["max_sessions"]
    if changes.max_sessions is not pools.UNSET and over > 0:
        # A limit of 0 switches the pool off: it never gets below that.
        until = (
            "the pool takes no new sessions while its limit is 0"
            if pool["max_sessions"] == 0
            else "new sessions start again once fewer than the limit are open"
        )
        print(
            f"Note: {pool['open_sessions']} sessions are open in pool {pool['name']}, "
            f"{over} more than the new limit. They keep running; {until} "
            "(`vdi-broker session list`).",
            file=sys.stderr,
        )
    return 0


async def pool_entitle(rt: Runtime, args: argparse.Namespace) -> int:
    kind, value = subject(args)
    print(describe_entitlements(await pools.entitle(rt, args.name, kind, value, actor())))
    if kind == "department":
        await note_unknown_departments(rt, [value])
    return 0


async def pool_revoke(rt: Runtime, args: argparse.Namespace) -> int:
    kind, value = subject(args)
    revoked = await pools.revoke(rt, args.name, kind, value, actor(), open_to_all=args.open_to_all)
    print(describe_entitlements(revoked))
    return 0


async def pool_assign(rt: Runtime, args: argparse.Namespace) -> int:
    a = await pools.assign_desktop(rt, args.name, args.user, args.desktop, actor())
    print(f"Desktop {a.desktop} (host {a.host}) is {a.user}'s own in pool {a.pool}.")
    return 0


async def pool_unassign(rt: Runtime, args: argparse.Namespace) -> int:
    a = await pools.unassign_desktop(rt, args.name, args.user, actor())
    print(
        f"Desktop {a.desktop} (host {a.host}) in pool {a.pool} is no longer {a.user}'s; "
        "it is reset before anyone else gets it."
    )
    return 0


async def host_add(rt: Runtime, args: argparse.Namespace) -> int:
    token = await hosts.add(rt, args.name, actor())
    if args.json:
        print(json.dumps({"name": args.name, "token": token}))
    else:
        print(
            f"Host {args.name} added. Agent token (shown once; store it in the agent's "
            f"token file, readable by the agent only: root:vdi-agent, mode 0640):\n{token}"
        )
    return 0


async def host_drain(rt: Runtime, args: argparse.Namespace) -> int:
    await hosts.set_state(rt, args.name, HostState.DRAINING, actor())
    print(f"Host {args.name} is draining: no new sessions; open ones continue.")
    return 0


async def host_activate(rt: Runtime, args: argparse.Namespace) -> int:
    await hosts.set_state(rt, args.name, HostState.ACTIVE, actor())
    print(f"Host {args.name} is active and takes new sessions.")
    return 0


async def host_maintenance(rt: Runtime, args: argparse.Namespace) -> int:
    await hosts.set_state(rt, args.name, HostState.MAINTENANCE, actor())
    print(f"Host {args.name} is in maintenance: no new sessions, and no alert while it is silent.")
    return 0


async def host_list(rt: Runtime, args: argparse.Namespace) -> int:
    emit(
        await hosts.list_all(rt),
        ["name", "state", "up", "agent_version", "report_age_s", "desktops"],
        args.json,
    )
    return 0


# -- policies and sessions --------------------------------------------------------


async def policy_cap(rt: Runtime, args: argparse.Namespace) -> int:
    cap = await policies.set_department_cap(
        rt, args.department, max_sessions=args.max, share=args.share, actor=actor()
    )
    if cap is None:
        print(f"Department {args.department.strip()} has no cap on home work.")
    else:
        share = cap["remote_share"]
        how = "fixed" if share is None else f"{share:g} of {cap['staff']} office staff"
        print(
            f"Department {cap['department']}: at most {cap['limit']} at home at once ({how}); "
            "field work does not count."
        )
        await note_unknown_departments(rt, [cap["department"]])
    return 0


async def policy_schedule_add(rt: Runtime, args: argparse.Namespace) -> int:
    scope, who = subject(args)
    schedule_id = await policies.add_schedule(
        rt, scope, who, args.days, args.start, args.end, actor()
    )
    added = await policies.get_schedule(rt, schedule_id)
    print(
        f"Schedule {schedule_id} added: {added['scope']} {added['subject']} may work from home "
        f"on {added['days']} from {added['start']} to {added['end']}."
    )
    await note_sessions_outside(rt)
    if scope == "department":
        await note_unknown_departments(rt, [added["subject"]])
    return 0


async def policy_schedule_remove(rt: Runtime, args: argparse.Namespace) -> int:
    removed = await policies.remove_schedule(rt, args.id, actor())
    print(f"Schedule {removed['id']} ({removed['scope']} {removed['subject']}) removed.")
    await note_sessions_outside(rt)
    return 0


async def note_sessions_outside(rt: Runtime) -> None:
    """After a change of telework windows: how many open home sessions it finds
    outside them, and when those end."""
    outside = await policies.sessions_outside_windows(rt)
    if outside:
        print(
            f"{outside} open home session(s) are outside their telework windows now; "
            f"they end {rt.settings.schedule_grace_s:g} s after their window closed or "
            "the windows changed, whichever is later."
        )


async def policy_priority_add(rt: Runtime, args: argparse.Namespace) -> int:
    name = args.name.strip()
    if await policies.add_priority_class(rt, name, actor()):
        print(f"Priority class {name} added: its staff are served from pools' reserves.")
    else:
        print(f"Priority class {name} exists already; nothing changed.")
    note = unused_priority_class_note(name, await users.priority_classes(rt))
    if note:
        print(note, file=sys.stderr)
    return 0


async def policy_priority_remove(rt: Runtime, args: argparse.Namespace) -> int:
    await policies.remove_priority_class(rt, args.name, actor())
    print(f"Priority class {args.name.strip()} removed.")
    return 0


# The kinds of policy: the `kind` of each entry in `policy list --json`, the key
# of policies.overview() (the admin API's shape), the table's title and columns.
POLICY_KINDS = (
    (
        "department_cap",
        "departments",
        "Department caps",
        ["department", "remote_cap", "remote_share", "staff", "limit"],
    ),
    ("schedule", "schedules", "Schedules", ["id", "scope", "subject", "days", "start", "end"]),
    ("priority_class", "priority_classes", "Priority classes", ["name", "users"]),
)


def policy_entries(overview: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One list of every policy, each entry with its `kind`: the shape of every
    list command's --json (docs/design.md)."""
    return [{"kind": kind, **row} for kind, key, _, _ in POLICY_KINDS for row in overview[key]]


async def policy_list(rt: Runtime, args: argparse.Namespace) -> int:
    everything = await policies.overview(rt)
    if args.json:
        print_json(policy_entries(everything))
        return 0
    for _, key, title, columns in POLICY_KINDS:
        print(f"{title}:")
        print_table(everything[key], columns, sys.stdout)
    return 0


async def session_list(rt: Runtime, args: argparse.Namespace) -> int:
    emit(
        [info.admin_dict() for info in await sessions.open_sessions(rt)],
        ["id", "user", "pool", "state", "work_mode", "desktop", "host", "team", "created_at"],
        args.json,
    )
    return 0


async def session_end(rt: Runtime, args: argparse.Namespace) -> int:
    async with rt.db.write_conn() as conn:
        ended = await sessions.end_where(
            rt, conn, Session.id == args.id, "admin_end", rt.clock.now(), actor()
        )
    if not ended:
        raise NotFound(f"There is no open session {args.id!r}.", code="unknown_session")
    print(f"Session {args.id} ended.")
    return 0


# -- overview ---------------------------------------------------------------------


async def status(rt: Runtime, args: argparse.Namespace) -> int:
    # One read of the fleet, the same figures /metrics exports.
    state = await fleet.read(rt)
    fleet_hosts, fleet_pools = state.hosts.values(), state.pools.values()
    up = sum(1 for h in fleet_hosts if h.up)
    draining = sum(1 for h in fleet_hosts if h.state == HostState.DRAINING)
    print(f"vdi-broker {__version__}; database {rt.db.url.render_as_string(hide_password=True)}")
    print(f"Hosts: {len(fleet_hosts)} registered, {up} up, {draining} draining")
    print(f"Pools: {len(fleet_pools)}; licences in all: {sum(p.max_sessions for p in fleet_pools)}")
    capacity = [
        {
            "pool": p.name,
            "in_use": p.open_sessions,
            "usable": p.usable,
            "free": p.free,
            "out_of_service": p.out_of_service,
            "licences": p.max_sessions,
            "if_largest_host_fails": p.without_largest_host,
        }
        for p in sorted(fleet_pools, key=lambda p: p.name)
    ]
    if capacity:
        print()
        print_table(capacity, list(capacity[0]), sys.stdout)
        print()
    settings = rt.settings
    if settings.gateway_enabled:
        # Imported here: asyncssh takes a sixth of a second to load, and no other
        # administration command needs it.
        from broker.gateway import hostkey

        fingerprint = hostkey.fingerprint_of_file(settings.gateway_host_key_file)
        where = f"{settings.effective_gateway_public_host}:{settings.effective_gateway_public_port}"
        # The address is this command's settings, not asked of a running broker:
        # one started with others (the demo's --gateway-port, another env file)
        # listens elsewhere. The host key is the data directory's file itself.
        print(f"SSH gateway: {where} (from this command's settings: --config, VDI_GATEWAY_*)")
        print(
            "SSH gateway host key: "
            f"{fingerprint or '(none yet: made when the broker first starts)'}"
        )
    else:
        print("SSH gateway: off")
    return 0


async def audit_show(rt: Runtime, args: argparse.Namespace) -> int:
    async with rt.db.read() as s:
        events = await audit.query(
            s, audit.AuditQuery(event=args.event, username=args.user, limit=args.limit)
        )
    rows = [audit.as_dict(e) for e in events]
    if args.json:
        print_json(rows)  # `detail` stays an object, as the admin API gives it
        return 0
    for row in rows:
        # One cell of a table: the detail as compact JSON text.
        row["detail"] = json.dumps(row["detail"], ensure_ascii=False) if row["detail"] else ""
    print_table(
        rows,
        ["id", "at", "event", "result", "username", "actor", "source_ip", "detail"],
        sys.stdout,
    )
    return 0


async def db_backup(rt: Runtime, args: argparse.Namespace) -> int:
    target = await backup_sqlite(rt.db, args.file)
    print(f"Backup written to {target} (mode 0600).")
    return 0


async def keys_rotate(rt: Runtime, args: argparse.Namespace) -> int:
    key_id, moved = await rotate_key(rt, actor())
    print(f"New current key {key_id}; {moved} TOTP secret(s) re-encrypted.")
    print(
        f"Copy {rt.settings.key_file} to every other broker replica now; until then their"
        " logins answer 503. Running brokers read the file again by themselves."
    )
    return 0


async def host_rotate_token(rt: Runtime, args: argparse.Namespace) -> int:
    token = await hosts.rotate_token(rt, args.name, actor())
    if args.json:
        print(json.dumps({"name": args.name, "token": token}))
    else:
        print(
            f"New agent token for {args.name} (the old one no longer works; put this in the "
            f"agent's token file, root:vdi-agent, mode 0640; the agent picks it up by "
            f"itself):\n{token}"
        )
    return 0


async def db_upgrade(rt: Runtime, args: argparse.Namespace) -> int:
    # open_runtime has already migrated; report where we stand.
    print(f"Database is at revision {await migrate.current_revision(rt.db)}.")
    return 0


# -- parser -----------------------------------------------------------------------


JSON_HELP = "print JSON, for scripts"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vdi-broker", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"vdi-broker {__version__}")
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run API, portal, gateway and background jobs")
    serve.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, help="TOML configuration file"
    )

    demo = sub.add_parser("demo", help="a self-contained demo on SQLite")
    demo.add_argument(
        "--dir", type=Path, help="demo data directory (default: $VDI_DATA_DIR, else ./demo-data)"
    )
    demo.add_argument(
        "--port", type=whole_number, help="portal port (default: $VDI_HTTP_PORT, else 8000; 0: any)"
    )
    demo.add_argument(
        "--gateway-port",
        type=whole_number,
        help="SSH gateway port (default: $VDI_GATEWAY_PORT, else 2222; 0: any)",
    )

    db = sub.add_parser("db", help="database schema").add_subparsers(
        dest="db_command", required=True
    )
    db.add_parser("upgrade", help="apply migrations (creates the database)").set_defaults(
        handler=db_upgrade, creates_database=True
    )
    backup = db.add_parser("backup", help="online backup of the SQLite database")
    backup.add_argument("file", type=Path)
    backup.set_defaults(handler=db_backup)

    keys = sub.add_parser("keys", help="the broker key file").add_subparsers(
        dest="keys_command", required=True
    )
    keys.add_parser("rotate", help="new current key; re-encrypt TOTP secrets").set_defaults(
        handler=keys_rotate
    )

    user = sub.add_parser("user", help="staff accounts").add_subparsers(
        dest="user_command", required=True
    )
    add = user.add_parser("add", help="add a local user")
    add.add_argument("name")
    add.add_argument("--department", required=True, help="for entitlements, caps, schedules")
    add.add_argument(
        "--role", choices=[r.value for r in Role], default="staff", help="default: staff"
    )
    add.add_argument(
        "--work-mode",
        choices=[w.value for w in WorkMode],
        default="home",
        help="home (counts against department caps) or field; default: home",
    )
    add.add_argument("--priority", metavar="CLASS", help="priority class (served from reserves)")
    add.add_argument("--team", metavar="TEAM", help="critical team (spread over hosts)")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (else: asked for)",
    )
    add.set_defaults(handler=user_add)
    enrol = user.add_parser("totp-enroll", help="give a user a TOTP secret (prints QR)")
    enrol.add_argument("name")
    enrol.add_argument("--replace", action="store_true", help="replace an existing secret")
    enrol.set_defaults(handler=user_totp_enroll)
    lst = user.add_parser("list", help="list users")
    lst.add_argument("--json", action="store_true", help=JSON_HELP)
    lst.set_defaults(handler=user_list)
    for name, handler, what in (
        ("lock", user_lock, "lock an account and end its sessions"),
        ("unlock", user_unlock, "unlock an account (also after failed logins)"),
        ("reset-totp", user_reset_totp, "make a user set up their authenticator again"),
    ):
        p = user.add_parser(name, help=what)
        p.add_argument("name")
        p.set_defaults(handler=handler)

    pool = sub.add_parser("pool", help="desktop pools").add_subparsers(
        dest="pool_command", required=True
    )
    padd = pool.add_parser("add", help="add a pool")
    padd.add_argument("name")
    padd.add_argument(
        "--type",
        required=True,
        choices=[t.value for t in PoolType],
        help="floating (any free desktop) or persistent (each user keeps one)",
    )
    padd.add_argument(
        "--protocol", required=True, choices=[p.value for p in Protocol], help="desktop protocol"
    )
    padd.add_argument(
        "--max-sessions", required=True, type=whole_number, metavar="N", help="licences"
    )
    padd.add_argument("--departments", metavar="A,B", help="entitled departments")
    padd.add_argument("--field", action="store_true", help="a pool for field workers")
    padd.set_defaults(handler=pool_add)
    plist = pool.add_parser(
        "list", help="list pools with their licence limits (`status` shows them in use)"
    )
    plist.add_argument("--json", action="store_true", help=JSON_HELP)
    plist.set_defaults(handler=pool_list)
    pset = pool.add_parser("set", help="change a pool's settings")
    pset.add_argument("name")
    pset.add_argument("--max-sessions", type=whole_number, metavar="N", help="licence limit")
    pset.add_argument(
        "--priority-reserve", type=decimal, metavar="F", help="share kept for priority staff"
    )
    pset.add_argument(
        "--spare",
        dest="spare_desktops",
        type=int_or_none,
        metavar="N|none",
        help="free desktops kept running (none: the broker does not manage power)",
    )
    for option, dest in (
        ("--disconnect-timeout", "disconnect_timeout_s"),
        ("--max-session-time", "max_session_s"),
        ("--idle-timeout", "idle_timeout_s"),
    ):
        pset.add_argument(option, dest=dest, type=int_or_none, metavar="S|none", help="seconds")
    field_flag = pset.add_mutually_exclusive_group()
    field_flag.add_argument("--field", action="store_const", const=True, help="a field pool")
    field_flag.add_argument(
        "--no-field", dest="field", action="store_const", const=False, help="not a field pool"
    )
    pset.set_defaults(handler=pool_set, **{f.name: pools.UNSET for f in fields(pools.PoolChanges)})
    pentitle = pool.add_parser("entitle", help="open a pool to a department or a user")
    pentitle.add_argument("name")
    add_subject(pentitle)
    pentitle.set_defaults(handler=pool_entitle)
    prevoke = pool.add_parser("revoke", help="close a pool to a department or a user")
    prevoke.add_argument("name")
    add_subject(prevoke)
    prevoke.add_argument(
        "--open-to-all",
        action="store_true",
        help="allow revoking the last entitlement, which opens the pool to everybody",
    )
    prevoke.set_defaults(handler=pool_revoke)
    passign = pool.add_parser("assign", help="give a user a desktop of a persistent pool")
    passign.add_argument("name")
    passign.add_argument("--user", required=True, metavar="U", help="the user")
    passign.add_argument("--desktop", metavar="D", help="NAME or HOST/NAME (default: a free one)")
    passign.set_defaults(handler=pool_assign)
    punassign = pool.add_parser("unassign", help="take a user's persistent desktop away")
    punassign.add_argument("name")
    punassign.add_argument("--user", required=True, metavar="U", help="the user")
    punassign.set_defaults(handler=pool_unassign)

    policy = sub.add_parser("policy", help="department caps, schedules, priority classes")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    cap = policy_sub.add_parser("cap", help="cap a department's simultaneous home work")
    cap.add_argument("department")
    cap_value = cap.add_mutually_exclusive_group(required=True)
    cap_value.add_argument(
        "--max", type=whole_number, metavar="N", help="at most N at home at once"
    )
    cap_value.add_argument("--share", type=decimal, metavar="F", help="at most a share of staff")
    cap_value.add_argument("--none", action="store_true", help="remove the cap")
    cap.set_defaults(handler=policy_cap)
    schedule = policy_sub.add_parser("schedule", help="telework windows").add_subparsers(
        dest="schedule_command", required=True
    )
    sadd = schedule.add_parser("add", help="allow home work on days and at times")
    add_subject(sadd)
    sadd.add_argument("--days", required=True, metavar="mon,wed", help="e.g. mon-fri or sat,sun")
    sadd.add_argument("--from", dest="start", required=True, metavar="HH:MM", help="local time")
    sadd.add_argument(
        "--to",
        dest="end",
        required=True,
        metavar="HH:MM",
        help="local time; not after --from: over midnight",
    )
    sadd.set_defaults(handler=policy_schedule_add)
    sremove = schedule.add_parser("remove", help="remove a window")
    sremove.add_argument("id", type=whole_number)
    sremove.set_defaults(handler=policy_schedule_remove)
    prio = policy_sub.add_parser("priority", help="priority classes").add_subparsers(
        dest="priority_command", required=True
    )
    for name, handler, what in (
        ("add", policy_priority_add, "add a class served from pools' priority reserves"),
        ("remove", policy_priority_remove, "remove a class"),
    ):
        p = prio.add_parser(name, help=what)
        p.add_argument("name")
        p.set_defaults(handler=handler)
    policy_all = policy_sub.add_parser("list", help="every policy")
    policy_all.add_argument("--json", action="store_true", help=JSON_HELP)
    policy_all.set_defaults(handler=policy_list)

    session = sub.add_parser("session", help="open sessions").add_subparsers(
        dest="session_command", required=True
    )
    slist = session.add_parser("list", help="list open sessions")
    slist.add_argument("--json", action="store_true", help=JSON_HELP)
    slist.set_defaults(handler=session_list)
    send = session.add_parser("end", help="end a session (its user is disconnected)")
    send.add_argument("id")
    send.set_defaults(handler=session_end)

    host = sub.add_parser("host", help="virtualisation hosts").add_subparsers(
        dest="host_command", required=True
    )
    hadd = host.add_parser("add", help="register a host; prints its agent token once")
    hadd.add_argument("name")
    hadd.add_argument("--json", action="store_true", help=JSON_HELP)
    hadd.set_defaults(handler=host_add)
    for name, handler, what in (
        ("drain", host_drain, "take no new sessions; open ones stay"),
        ("activate", host_activate, "take sessions again"),
        ("maintenance", host_maintenance, "take no sessions, not even persistent desktops'"),
    ):
        p = host.add_parser(name, help=what)
        p.add_argument("name")
        p.set_defaults(handler=handler)
    rotate = host.add_parser("rotate-token", help="replace a host's agent token")
    rotate.add_argument("name")
    rotate.add_argument("--json", action="store_true", help=JSON_HELP)
    rotate.set_defaults(handler=host_rotate_token)
    hlist = host.add_parser(
        "list", help="list hosts: state, whether they report, agent version, desktops"
    )
    hlist.add_argument("--json", action="store_true", help=JSON_HELP)
    hlist.set_defaults(handler=host_list)

    sub.add_parser("status", help="capacity at a glance").set_defaults(handler=status)

    aud = sub.add_parser("audit", help="latest audit events")
    aud.add_argument(
        "--limit", type=bounded_int(1, 10_000), default=20, help="how many (1 to 10000)"
    )
    aud.add_argument("--event", help="only this event, e.g. login or account_locked")
    aud.add_argument("--user", help="only events about this user name")
    aud.add_argument("--json", action="store_true", help=JSON_HELP)
    aud.set_defaults(handler=audit_show)
    return parser


async def run_handler(settings: Settings, handler: Handler, args: argparse.Namespace) -> int:
    if not getattr(args, "creates_database", False):
        require_database(settings)
    rt = await open_runtime(settings)
    try:
        return await handler(rt, args)
    finally:
        await rt.close()


def require_database(settings: Settings) -> None:
    """Refuse to work on an embedded database that does not exist yet. Run without
    the service's settings (VDI_DATA_DIR, --config), a command would otherwise
    make a new, empty one elsewhere and report on it, back it up or rotate its
    key as if it were the broker's. `db upgrade` creates it on purpose."""
    path = sqlite_file(settings.effective_database_url)
    if path is not None and not path.exists():
        raise NotFound(
            f"There is no database at {path}. Give the broker's settings (VDI_DATA_DIR, "
            "--config, VDI_DATABASE_URL), or create it with 'vdi-broker db upgrade'.",
            code="no_database",
        )


def database_message(exc: BaseException, settings: Settings | None, what: str) -> str:
    """One line for a database that is not there or will not let us in: where,
    `what` happened, and what the driver said (the password left out)."""
    cause = driver_error(exc)
    said = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    where = ""
    if settings is not None:
        url = make_url(settings.effective_database_url)
        where = f" {url.render_as_string(hide_password=True)}"
    return f"error: the database{where} {what}: {said}"


def check_text(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse (exit 2) an argument that is not UTF-8 text, such as a name typed in
    a Latin-1 terminal: no name can hold it, and the database driver cannot even
    send it to look it up. File names (Path) may be any bytes."""
    for value in vars(args).values():
        if isinstance(value, str) and not encodable(value):
            shown = value.encode("utf-8", "backslashreplace").decode("utf-8")
            parser.error(f"'{shown}' is not UTF-8 text; {NOT_UTF8}")


JSON_VALUES = (
    'lists and tables in VDI_* variables are JSON: ["a", "b"] or {"key": "value"} '
    "(networks may also be separated by commas)"
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_text(parser, args)
    if isinstance(sys.stdout, io.TextIOWrapper):
        # A terminal that is not UTF-8 (Latin-1) cannot show every name ("Łódź"):
        # an escape is shown for it, in --json a valid one. Else the command failed
        # with a traceback after its change was stored, and lists could not be read.
        sys.stdout.reconfigure(errors="backslashreplace")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings: Settings | None = None
    try:
        if args.command == "demo":
            from broker.demo import run_demo

            return run_demo(args)
        settings = load_settings(args.config)
        if args.command == "serve":
            from broker.serve import run_server

            return run_server(settings)
        code = asyncio.run(run_handler(settings, args.handler, args))
        sys.stdout.flush()  # here, where a closed pipe is caught below
        return code
    except VdiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"error: invalid configuration:\n{describe_invalid(exc)}", file=sys.stderr)
        return 2
    except SettingsError as exc:
        # A VDI_* variable for a list or table that is not JSON (the settings
        # source names the setting, not the value).
        print(f"error: invalid configuration: {exc}; {JSON_VALUES}", file=sys.stderr)
        return 2
    except (KeyFileError, ConfigFileError, UnknownVariable, DirectoryError, TlsFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`vdi-broker user list | head`): that is no error.
        # Point stdout at nothing so that the interpreter's own flush at exit
        # does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        # Last: BrokenPipeError above is a ConnectionError, which counts as "down".
        if login_refused(exc):
            print(database_message(exc, settings, "refused the broker's login"), file=sys.stderr)
            return 2
        if not database_down(exc):
            raise  # a bug: the traceback is what finds it
        print(database_message(exc, settings, "is not reachable"), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
