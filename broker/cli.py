"""`vdi-broker`: serve, demo, database and administration commands.

Administration commands work on the database directly (like `manage.py`), so
they also work while no broker runs. Every list command takes `--json`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from broker import __version__
from broker.audit import log as audit
from broker.auth import enrolment
from broker.config import Settings, load_settings
from broker.domain import HostState, PoolType, Protocol, Role, WorkMode
from broker.errors import InvalidInput, VdiError
from broker.hosts import service as hosts
from broker.pools import service as pools
from broker.runtime import Runtime, open_runtime
from broker.security.crypto import KeyFileError
from broker.store import migrate
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


def emit(rows: list[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    if as_json:
        json.dump(rows, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print_table(rows, columns, sys.stdout)


# -- users ----------------------------------------------------------------------


def read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise InvalidInput("No password on standard input.")
        return password
    if not sys.stdin.isatty():
        raise InvalidInput("No terminal to ask for the password; use --password-stdin.")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Password again: "):
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
    users.validate(new)  # fail on bad names before asking for a password
    user = await users.add(rt, new, read_password(args), actor())
    print(f"User {user.name} added ({user.department}, {user.role}, {user.work_mode}).")
    print(f"Next: vdi-broker user totp-enroll {user.name}  (or the user enrols at first login)")
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
    result = await enrolment.admin_enrol(
        rt, args.name.strip().lower(), actor(), replace=args.replace
    )
    print(f"TOTP secret for {args.name} (hand it over in person; it is not shown again):\n")
    print(result.qr_text)
    print(f"otpauth URI: {result.otpauth_uri}")
    print(f"Manual key:  {result.secret}\n")
    print("Recovery codes (each works once):")
    for code in result.recovery_codes:
        print(f"  {code}")
    return 0


async def user_lock(rt: Runtime, args: argparse.Namespace) -> int:
    user = await users.set_locked(rt, args.name, True, actor())
    print(f"User {user.name} is locked and logged out everywhere.")
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
    departments = [d for d in (args.departments or "").split(",") if d.strip()]
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
    print(f"Pool {pool.name} added: {pool.type}, {pool.protocol}, {pool.max_sessions} licences.")
    return 0


async def pool_list(rt: Runtime, args: argparse.Namespace) -> int:
    emit(
        await pools.list_all(rt),
        ["name", "type", "protocol", "max_sessions", "field", "departments"],
        args.json,
    )
    return 0


async def host_add(rt: Runtime, args: argparse.Namespace) -> int:
    token = await hosts.add(rt, args.name, actor())
    if args.json:
        print(json.dumps({"name": args.name, "token": token}))
    else:
        print(
            f"Host {args.name} added. Agent token (shown once; store it in the agent's "
            f"token file with mode 0600):\n{token}"
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


# -- overview ---------------------------------------------------------------------


async def status(rt: Runtime, args: argparse.Namespace) -> int:
    host_rows = await hosts.list_all(rt)
    pool_rows = await pools.list_all(rt)
    up = sum(1 for h in host_rows if h["up"])
    print(f"vdi-broker {__version__}; database {rt.db.url.render_as_string(hide_password=True)}")
    print(
        f"Hosts: {len(host_rows)} registered, {up} up, "
        f"{sum(1 for h in host_rows if h['state'] == 'draining')} draining"
    )
    print(f"Pools: {len(pool_rows)}; licences in all: {sum(p['max_sessions'] for p in pool_rows)}")
    return 0


async def audit_show(rt: Runtime, args: argparse.Namespace) -> int:
    async with rt.db.read() as s:
        events = await audit.query(
            s, audit.AuditQuery(event=args.event, username=args.user, limit=args.limit)
        )
    rows = [audit.as_dict(e) for e in events]
    for row in rows:
        row["detail"] = json.dumps(row["detail"], ensure_ascii=False) if row["detail"] else ""
    emit(
        rows, ["id", "at", "event", "result", "username", "actor", "source_ip", "detail"], args.json
    )
    return 0


async def db_upgrade(rt: Runtime, args: argparse.Namespace) -> int:
    # open_runtime has already migrated; report where we stand.
    print(f"Database is at revision {await migrate.current_revision(rt.db)}.")
    return 0


# -- parser -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vdi-broker", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"vdi-broker {__version__}")
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run API, portal, gateway and background jobs")
    serve.add_argument("--config", type=Path, default=argparse.SUPPRESS)

    demo = sub.add_parser("demo", help="a self-contained demo on SQLite")
    demo.add_argument(
        "--dir",
        type=Path,
        default=Path("demo-data"),
        help="demo data directory (default: ./demo-data)",
    )
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--gateway-port", type=int, default=2222)

    db = sub.add_parser("db", help="database schema").add_subparsers(
        dest="db_command", required=True
    )
    db.add_parser("upgrade", help="apply migrations").set_defaults(handler=db_upgrade)

    user = sub.add_parser("user", help="staff accounts").add_subparsers(
        dest="user_command", required=True
    )
    add = user.add_parser("add", help="add a local user")
    add.add_argument("name")
    add.add_argument("--department", required=True)
    add.add_argument("--role", choices=[r.value for r in Role], default="staff")
    add.add_argument("--work-mode", choices=[w.value for w in WorkMode], default="home")
    add.add_argument("--priority", metavar="CLASS")
    add.add_argument("--team", metavar="TEAM")
    add.add_argument("--password-stdin", action="store_true")
    add.set_defaults(handler=user_add)
    enrol = user.add_parser("totp-enroll", help="give a user a TOTP secret (prints QR)")
    enrol.add_argument("name")
    enrol.add_argument("--replace", action="store_true", help="replace an existing secret")
    enrol.set_defaults(handler=user_totp_enroll)
    lst = user.add_parser("list", help="list users")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=user_list)
    for name, handler in (
        ("lock", user_lock),
        ("unlock", user_unlock),
        ("reset-totp", user_reset_totp),
    ):
        p = user.add_parser(name)
        p.add_argument("name")
        p.set_defaults(handler=handler)

    pool = sub.add_parser("pool", help="desktop pools").add_subparsers(
        dest="pool_command", required=True
    )
    padd = pool.add_parser("add", help="add a pool")
    padd.add_argument("name")
    padd.add_argument("--type", required=True, choices=[t.value for t in PoolType])
    padd.add_argument("--protocol", required=True, choices=[p.value for p in Protocol])
    padd.add_argument("--max-sessions", required=True, type=int, metavar="N")
    padd.add_argument("--departments", metavar="A,B", help="entitled departments")
    padd.add_argument("--field", action="store_true", help="a pool for field workers")
    padd.set_defaults(handler=pool_add)
    plist = pool.add_parser("list")
    plist.add_argument("--json", action="store_true")
    plist.set_defaults(handler=pool_list)

    host = sub.add_parser("host", help="virtualisation hosts").add_subparsers(
        dest="host_command", required=True
    )
    hadd = host.add_parser("add", help="register a host; prints its agent token once")
    hadd.add_argument("name")
    hadd.add_argument("--json", action="store_true")
    hadd.set_defaults(handler=host_add)
    for name, handler in (
        ("drain", host_drain),
        ("activate", host_activate),
        ("maintenance", host_maintenance),
    ):
        p = host.add_parser(name)
        p.add_argument("name")
        p.set_defaults(handler=handler)
    hlist = host.add_parser("list")
    hlist.add_argument("--json", action="store_true")
    hlist.set_defaults(handler=host_list)

    sub.add_parser("status", help="capacity at a glance").set_defaults(handler=status)

    aud = sub.add_parser("audit", help="latest audit events")
    aud.add_argument("--limit", type=int, default=20)
    aud.add_argument("--event")
    aud.add_argument("--user")
    aud.add_argument("--json", action="store_true")
    aud.set_defaults(handler=audit_show)
    return parser


async def run_handler(settings: Settings, handler: Handler, args: argparse.Namespace) -> int:
    rt = await open_runtime(settings)
    try:
        return await handler(rt, args)
    finally:
        await rt.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "demo":
            from broker.demo import run_demo

            return run_demo(args)
        settings = load_settings(args.config)
        if args.command == "serve":
            from broker.serve import run_server

            return run_server(settings)
        return asyncio.run(run_handler(settings, args.handler, args))
    except VdiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"error: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except (KeyFileError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
