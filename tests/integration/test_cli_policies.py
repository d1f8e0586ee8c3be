"""`vdi-broker policy`, `pool set|entitle|revoke|assign|unassign` and `session`
as a person runs them: real processes on a real database."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import shlex
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import update

from broker.domain import PoolType, WorkMode
from broker.policy.schedule import DAYS
from broker.runtime import Runtime
from broker.store.tables import Session
from broker.users import service as users
from tests.support.fleet import add_pool, ask, reporting_host, sign_in, staff
from tests.support.processes import clean_env, new_broker_env, vdi_broker

GOOD_PASSWORD = "Gutes Passwort 2026!"
TABLES = (
    "department_policies",
    "schedules",
    "priority_classes",
    "pools",
    "pool_entitlements",
    "desktops",
    "sessions",
    "audit_events",
)


def ok(command: str, env: dict[str, str], input: str | None = None) -> str:
    """Run `vdi-broker COMMAND` (words as a shell splits them); it must succeed."""
    result = vdi_broker(*shlex.split(command), env=env, input=input)
    assert result.returncode == 0, result.stderr
    return result.stdout


def db_state(data_dir: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(data_dir / "vdi-broker.sqlite3") as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in TABLES}


def by_kind(entries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The entries of `policy list --json` by their kind, in their order."""
    kinds: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        kinds.setdefault(entry["kind"], []).append(entry)
    return kinds


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with pools, a user and some policies, made once."""
    data = tmp_path_factory.mktemp("template") / "data"
    env = new_broker_env(data)
    ok(
        "user add maria --department Ordnungsamt --priority Krisenstab --password-stdin",
        env=env,
        input=GOOD_PASSWORD + "\n",
    )
    for name, kind in (("Finanzen", "floating"), ("Planung", "persistent")):
        ok(f"pool add {name} --type {kind} --protocol rdp --max-sessions 10", env=env)
    ok("policy cap Bauamt --max 3", env=env)
    ok("policy schedule add --department Bauamt --days mon-fri --from 07:00 --to 18:00", env=env)
    ok("policy priority add Krisenstab", env=env)
    return data


@pytest.fixture
def env(template: Path, tmp_path: Path) -> dict[str, str]:
    data = tmp_path / "data"
    shutil.copytree(template, data)
    return clean_env({"VDI_DATA_DIR": str(data)})


def test_policies_round_trip(env: dict[str, str]) -> None:
    ok("policy cap Ordnungsamt --share 0.5", env=env)
    added = ok("policy schedule add --user Maria --days sun,sat --from 6:00 --to 22:00", env=env)
    assert "may work from home on sat,sun from 06:00 to 22:00" in added
    assert "exists already" in ok("policy priority add Krisenstab", env=env)
    ok("policy priority add Sozialleistungen", env=env)

    entries = json.loads(ok("policy list --json", env=env))
    # A list of objects, as every list command prints; `kind` says which policy.
    assert isinstance(entries, list) and all(isinstance(e, dict) for e in entries)
    assert [e["kind"] for e in entries] == [
        *["department_cap"] * 2, *["schedule"] * 2, *["priority_class"] * 2
    ]  # fmt: skip
    listed = by_kind(entries)
    assert [
        (d["department"], d["remote_cap"], d["remote_share"], d["limit"])
        for d in listed["department_cap"]
    ] == [
        ("Bauamt", 3, None, 3),
        ("Ordnungsamt", None, 0.5, 0),  # one member: half of one is none
    ]
    schedules = [
        (s["scope"], s["subject"], s["days"], s["start"], s["end"]) for s in listed["schedule"]
    ]
    assert schedules == [
        ("department", "Bauamt", "mon,tue,wed,thu,fri", "07:00", "18:00"),
        ("user", "maria", "sat,sun", "06:00", "22:00"),
    ]
    assert [(c["name"], c["users"]) for c in listed["priority_class"]] == [
        ("Krisenstab", 1),
        ("Sozialleistungen", 0),
    ]
    table = ok("policy list", env=env)
    assert "Department caps:" in table and "Schedules:" in table and "Priority classes:" in table
    # The office staff a share counts from, next to the limit (docs/operations.md).
    assert re.search(r"^DEPARTMENT +REMOTE_CAP +REMOTE_SHARE +STAFF +LIMIT$", table, re.M)
    assert re.search(r"^Ordnungsamt +- +0\.5 +1 +0$", table, re.M)

    ok("policy cap Bauamt --none", env=env)
    ok(f"policy schedule remove {listed['schedule'][0]['id']}", env=env)
    ok("policy priority remove Krisenstab", env=env)
    after = by_kind(json.loads(ok("policy list --json", env=env)))
    assert [d["department"] for d in after["department_cap"]] == ["Ordnungsamt"]
    assert [s["subject"] for s in after["schedule"]] == ["maria"]
    assert [c["name"] for c in after["priority_class"]] == ["Sozialleistungen"]
    events = json.loads(ok("audit --event policy_changed --json", env=env))
    assert [e["result"] for e in events[:3]] == [
        "priority_class_removed",
        "schedule_removed",
        "department_cap_removed",
    ]


def test_a_priority_class_nobody_has_is_added_with_a_note(env: dict[str, str]) -> None:
    """maria's class is "Krisenstab"; declaring "krisenstab" would leave her
    without the reserve. The class is still added (users may get it later),
    with a note on stderr; stdout stays as it was."""
    typo = vdi_broker("policy", "priority", "add", "krisenstab", env=env)
    assert typo.returncode == 0, typo.stderr
    assert "Priority class krisenstab added" in typo.stdout
    assert "no user has priority class krisenstab (did you mean Krisenstab?)" in typo.stderr
    known = vdi_broker("policy", "priority", "add", "Krisenstab", env=env)
    assert known.returncode == 0 and known.stderr == ""


def test_a_user_of_an_undeclared_priority_class_is_added_with_a_note(
    env: dict[str, str],
) -> None:
    """The other side of the note above: "krisenstab" on a new account, where the
    class is "Krisenstab", leaves her without the reserve. She is still added
    (the class may be declared later), with a note on stderr."""
    typo = vdi_broker(
        "user", "add", "lena", "--department", "Ordnungsamt", "--priority", "krisenstab",
        "--password-stdin", env=env, input=GOOD_PASSWORD + "\n",
    )  # fmt: skip
    assert typo.returncode == 0, typo.stderr
    assert "User lena added" in typo.stdout and "Note" not in typo.stdout
    assert "priority class krisenstab (did you mean Krisenstab?) is not declared" in typo.stderr
    assert "policy priority add krisenstab" in typo.stderr
    users = json.loads(ok("user list --json", env=env))
    assert {u["name"]: u["priority_class"] for u in users}["lena"] == "krisenstab"
    known = vdi_broker(
        "user", "add", "paul", "--department", "Ordnungsamt", "--priority", "Krisenstab",
        "--password-stdin", env=env, input=GOOD_PASSWORD + "\n",
    )  # fmt: skip
    assert known.returncode == 0 and known.stderr == ""


def test_rules_for_a_department_nobody_is_in_are_stored_with_a_note(
    env: dict[str, str],
) -> None:
    """A typo in a department name would store a rule that applies to nobody; the
    command says so on stderr (stdout stays clean) and still succeeds, because
    departments may get their users later (directory users at first login)."""
    typo = vdi_broker("policy", "cap", "Ordnungsant", "--max", "2", env=env)
    assert typo.returncode == 0, typo.stderr
    assert "no user is in department Ordnungsant (did you mean Ordnungsamt?)" in typo.stderr
    assert "Ordnungsant" in ok("policy list", env=env)
    known = vdi_broker("policy", "cap", "Ordnungsamt", "--max", "2", env=env)
    assert known.returncode == 0 and known.stderr == ""
    schedule = vdi_broker(
        "policy", "schedule", "add", "--department", "Bauamt",
        "--days", "sat", "--from", "08:00", "--to", "12:00", env=env,
    )  # fmt: skip
    assert "no user is in department Bauamt" in schedule.stderr
    pool = vdi_broker(
        "pool", "add", "Kasse", "--type", "floating", "--protocol", "rdp",
        "--max-sessions", "2", "--departments", "Ordnungsamt,Stadtkasse", env=env,
    )  # fmt: skip
    assert pool.returncode == 0
    assert "department Stadtkasse." in pool.stderr and "Ordnungsamt" not in pool.stderr
    entitle = vdi_broker("pool", "entitle", "Finanzen", "--department", "Ordnungsamt", env=env)
    assert entitle.returncode == 0 and entitle.stderr == ""


def test_pool_settings_and_entitlements_round_trip(env: dict[str, str]) -> None:
    out = ok(
        "pool set Finanzen --max-sessions 20 --priority-reserve 0.1 --spare 2 "
        "--disconnect-timeout 900 --max-session-time 36000 --idle-timeout 1800 --field",
        env=env,
    )
    assert "20 licences" in out and "idle timeout 1800 s" in out
    assert "Pool Finanzen: 1 licence," in ok("pool set Finanzen --max-sessions 1", env=env)
    ok("pool set Finanzen --max-sessions 20", env=env)
    ok("pool set Finanzen --spare none --idle-timeout none --no-field", env=env)
    pool = next(p for p in json.loads(ok("pool list --json", env=env)) if p["name"] == "Finanzen")
    assert {
        k: pool[k]
        for k in (
            "max_sessions",
            "priority_reserve",
            "spare_desktops",
            "disconnect_timeout_s",
            "max_session_s",
            "idle_timeout_s",
            "field",
        )
    } == {
        "max_sessions": 20,
        "priority_reserve": 0.1,
        "spare_desktops": None,
        "disconnect_timeout_s": 900,
        "max_session_s": 36000,
        "idle_timeout_s": None,
        "field": False,
    }

    assert "open to departments Bauamt" in ok("pool entitle Finanzen --department Bauamt", env=env)
    assert "departments Bauamt; users maria" in ok("pool entitle Finanzen --user MARIA", env=env)
    pool = next(p for p in json.loads(ok("pool list --json", env=env)) if p["name"] == "Finanzen")
    assert (pool["departments"], pool["users"]) == (["Bauamt"], ["maria"])
    ok("pool revoke Finanzen --user maria", env=env)
    # Without its last entitlement the pool would be open to everybody, the
    # opposite of closing it: that takes a word of its own.
    data = Path(env["VDI_DATA_DIR"])
    before = db_state(data)
    refused = vdi_broker("pool", "revoke", "Finanzen", "--department", "Bauamt", env=env)
    assert refused.returncode == 2 and refused.stdout == ""
    assert "last entitlement of pool Finanzen" in refused.stderr
    assert "--open-to-all" in refused.stderr
    assert "--max-sessions 0" in refused.stderr  # how to close it instead
    assert db_state(data) == before
    last = ok("pool revoke Finanzen --department Bauamt --open-to-all", env=env)
    assert "open to everybody" in last


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("policy cap Bauamt --max -1", "number of sessions"),
        ("policy cap Bauamt --share 1.5", "fraction"),
        ("policy cap Bauamt --max 2 --share 0.5", "not allowed with"),
        ("policy cap 'Bau\tamt' --max 2", "department name"),
        ("policy cap Bauamt", "one of the arguments"),
        ("policy schedule add --department IT --days montag --from 07:00 --to 18:00", "weekday"),
        ("policy schedule add --department IT --days mon --from 7 --to 18:00", "not a time"),
        ("policy schedule add --user ghost --days mon --from 07:00 --to 18:00", "no user"),
        ("policy schedule add --department Bauamt --days mon-fri --from 7:00 --to 18:00", "exists"),
        ("policy schedule remove 99", "no schedule"),
        ("policy schedule remove first", "not a whole number"),
        # int() and float() would read these as 3, 40, 1.0 and 1000.
        ("pool set Finanzen --max-sessions ٣", "not a whole number"),
        ("pool set Finanzen --max-sessions ' 4_0 '", "not a whole number"),
        ("policy cap Bauamt --share ١", "not a decimal number"),
        ("policy cap Bauamt --max 1e3", "not a whole number"),
        ("pool set Finanzen --priority-reserve nan", "not a decimal number"),
        ("policy priority add ' '", "priority class name"),
        ("policy priority remove Kantine", "no priority class"),
        ("pool set Finanzen", "Nothing to change"),
        ("pool set Finanzen --idle-timeout 30", "idle timeout"),
        ("pool set Finanzen --max-sessions 5 --spare -1", "Spare desktops"),
        ("pool set Finanzen --priority-reserve 1", "priority reserve"),
        ("pool set Finanzen --max-session-time soon", "whole number nor 'none'"),
        ("pool set Finanzen --field --no-field", "not allowed with"),
        ("pool set Gibtsnicht --max-sessions 3", "no pool"),
        ("pool entitle Finanzen --user ghost", "no user"),
        ("pool entitle Finanzen", "one of the arguments"),
        ("pool revoke Finanzen --department Bauamt", "no entitlement"),
        ("pool assign Finanzen --user maria", "only persistent pools"),
        ("pool assign Planung --user maria --desktop pc1", "no desktop"),
        ("pool unassign Planung --user maria", "no desktop in pool"),
        ("session end 0b6c3c1e", "no open session"),
    ],
)
def test_bad_input_fails_clearly_and_changes_nothing(
    env: dict[str, str], command: str, message: str
) -> None:
    data = Path(env["VDI_DATA_DIR"])
    before = db_state(data)
    result = vdi_broker(*shlex.split(command), env=env)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert db_state(data) == before


async def test_assignments_and_sessions_from_the_command_line(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """On the database the broker runs on (SQLite and PostgreSQL), next to a
    running app: the CLI sees its sessions and its changes reach staff."""
    env = clean_env(
        {
            "VDI_DATA_DIR": str(runtime.settings.data_dir),
            "VDI_DATABASE_URL": runtime.settings.effective_database_url,
        }
    )

    async def cli(command: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(vdi_broker, *shlex.split(command), env=env)

    await add_pool(runtime, "Planung", type=PoolType.PERSISTENT)
    agent = await reporting_host(runtime, client, 3, pool="Planung")
    maria = await staff(runtime, "maria")

    assigned = await cli("pool assign Planung --user maria --desktop vhost01-d001")
    assert assigned.returncode == 0, assigned.stderr
    assert "vhost01-d001 (host vhost01) is maria's own" in assigned.stdout
    session = (await ask(client, maria, pool="Planung")).json()["session"]
    assert session["desktop"] == "vhost01-d001"

    listed = await cli("session list --json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["id"], r["user"], r["pool"], r["state"], r["desktop"], r["host"]) for r in rows] == [
        (session["id"], "maria", "Planung", "active", "vhost01-d001", "vhost01")
    ]
    assert {"work_mode", "team", "created_at"} <= set(rows[0])
    assert rows[0]["disconnected_at"] is None
    assert "vhost01-d001" in (await cli("session list")).stdout
    # Since when a disconnected session holds its licence unused (the runbook of
    # VdiLicenceLimitReached asks).
    dropped = runtime.clock.now()
    async with runtime.db.write() as s:
        await s.execute(update(Session).values(state="disconnected", disconnected_at=dropped))
    row = json.loads((await cli("session list --json")).stdout)[0]
    assert (row["state"], row["disconnected_at"]) == ("disconnected", dropped.isoformat())

    busy = await cli("pool unassign Planung --user maria")
    assert busy.returncode == 2 and "open session" in busy.stderr
    ended = await cli(f"session end {session['id']}")
    assert ended.returncode == 0, ended.stderr
    gone = await client.get(f"/api/v1/sessions/{session['id']}", headers=maria)
    assert gone.json()["session"]["state"] == "ended"
    assert gone.json()["session"]["end_reason"] == "admin_end"
    again = await cli(f"session end {session['id']}")
    assert again.returncode == 2 and "no open session" in again.stderr
    assert json.loads((await cli("session list --json")).stdout) == []

    unassigned = await cli("pool unassign Planung --user maria")
    assert unassigned.returncode == 0, unassigned.stderr
    # Nobody gets her desktop until its agent has reset it.
    taken = [
        (await ask(client, await staff(runtime, name), pool="Planung")).json()
        for name in ("felix", "erna", "jan")
    ]
    assert [t["session"]["desktop"] for t in taken[:2]] == ["vhost01-d000", "vhost01-d002"]
    assert taken[2]["error"] == "capacity_full"
    assert [a["kind"] for a in await agent.obey()] == ["reset"]
    jan = await ask(client, await sign_in(runtime, "jan"), pool="Planung")
    assert jan.json()["session"]["desktop"] == "vhost01-d001"

    # A limit lowered below the licences in use: said, and nobody is thrown out.
    lowered = await cli("pool set Planung --max-sessions 1")
    assert lowered.returncode == 0, lowered.stderr
    assert "Pool Planung: 1 licence," in lowered.stdout
    assert "3 sessions are open in pool Planung, 2 more than the new limit" in lowered.stderr
    listed_pool = next(p for p in json.loads((await cli("pool list --json")).stdout))
    assert (listed_pool["max_sessions"], listed_pool["open_sessions"]) == (1, 3)
    assert len(json.loads((await cli("session list --json")).stdout)) == 3
    raised = await cli("pool set Planung --max-sessions 5")
    assert raised.returncode == 0 and raised.stderr == ""
    other = await cli("pool set Planung --max-sessions 1 --spare 0")
    assert other.returncode == 0 and "2 more than" in other.stderr
    quiet = await cli("pool set Planung --spare 1")
    assert quiet.returncode == 0 and quiet.stderr == ""  # the limit was not touched
    # Switched off on purpose: no session will ever be "fewer than 0".
    off = await cli("pool set Planung --max-sessions 0")
    assert off.returncode == 0 and "3 more than the new limit" in off.stderr
    assert "once fewer than the limit" not in off.stderr
    assert "takes no new sessions" in off.stderr


async def test_changing_schedules_says_which_sessions_are_outside(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """The command tells the administrator how many home sessions are outside
    their windows now and will end after the grace."""
    env = clean_env(
        {
            "VDI_DATA_DIR": str(runtime.settings.data_dir),
            "VDI_DATABASE_URL": runtime.settings.effective_database_url,
        }
    )
    await add_pool(runtime)
    await reporting_host(runtime, client, 3)
    for name in ("anna", "bernd"):
        assert (await ask(client, await staff(runtime, name))).status_code == 201
    # The command runs on the real clock: a window on a day that is not today
    # in Berlin leaves both sessions outside.
    today = dt.datetime.now(ZoneInfo("Europe/Berlin")).weekday()
    day = DAYS[(today + 3) % 7]
    command = f"policy schedule add --department Finanzen --days {day} --from 07:00 --to 18:00"
    added = await asyncio.to_thread(vdi_broker, *shlex.split(command), env=env)
    assert added.returncode == 0, added.stderr
    assert "2 open home session(s) are outside their telework windows now" in added.stdout
    assert "3600 s after" in added.stdout
    # Her own window (all of today) replaces the department's for anna.
    command = f"policy schedule add --user anna --days {DAYS[today]} --from 00:00 --to 00:00"
    quiet = await asyncio.to_thread(vdi_broker, *shlex.split(command), env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert "1 open home session(s)" in quiet.stdout  # bernd's
    # Removing her window puts anna back under the department's: both are outside.
    own = re.search(r"Schedule (\d+) added", quiet.stdout)
    assert own is not None
    removed = await asyncio.to_thread(vdi_broker, "policy", "schedule", "remove", own[1], env=env)
    assert removed.returncode == 0, removed.stderr
    assert "2 open home session(s) are outside their telework windows now" in removed.stdout


async def test_a_share_cap_says_which_staff_it_is_a_share_of(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """Field workers and locked accounts are not office staff: the share is of
    the others, in what the command says as in what it enforces."""
    env = clean_env(
        {
            "VDI_DATA_DIR": str(runtime.settings.data_dir),
            "VDI_DATABASE_URL": runtime.settings.effective_database_url,
        }
    )
    for i in range(6):
        await staff(runtime, f"field{i}", department="Bauhof", work_mode=WorkMode.FIELD)
    await users.set_locked(runtime, "field0", True, "admin")
    for name in ("anna", "bernd"):
        await staff(runtime, name, department="Bauhof")
    command = "policy cap Bauhof --share 0.5"
    capped = await asyncio.to_thread(vdi_broker, *shlex.split(command), env=env)
    assert capped.returncode == 0, capped.stderr
    assert "at most 1 at home at once (0.5 of 2 office staff)" in capped.stdout
