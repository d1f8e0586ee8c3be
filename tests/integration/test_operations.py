"""Operations: audit retention that audits itself, key and token rotation, backup."""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update

from agent.protocol import ActionKind
from broker.audit import log as audit
from broker.audit.retention import purge
from broker.clock import FakeClock
from broker.hosts import actions
from broker.runtime import Runtime, open_runtime
from broker.security.crypto import SecretBox
from broker.store.tables import AuditEvent, Desktop, Host, HostAction, Session, User
from tests.support.accounts import add_user, code_now, login
from tests.support.fleet import add_pool, ask, reporting_host, staff
from tests.support.processes import VENV_BIN, new_broker_env, vdi_broker


async def events(rt: Runtime, name: str | None = None) -> int:
    async with rt.db.read() as s:
        query = select(func.count()).select_from(AuditEvent)
        if name:
            query = query.where(AuditEvent.event == name)
        return int(await s.scalar(query) or 0)


async def test_audit_retention_keeps_a_year_and_records_the_purge(
    runtime: Runtime, clock: FakeClock
) -> None:
    async with runtime.db.write_conn() as conn:
        for days in (400, 366, 364, 10):
            await audit.record(
                conn,
                clock.now() - dt.timedelta(days=days),
                "login",
                result="success",
                username=f"old{days}",
            )
    assert await purge(runtime) == 2
    assert await events(runtime, "login") == 2
    async with runtime.db.read() as s:
        purged = (
            await s.scalars(select(AuditEvent).where(AuditEvent.event == "audit_purged"))
        ).one()
    assert purged.detail is not None and purged.detail["events"] == 2
    assert purged.detail["retention_days"] == 365
    assert await purge(runtime) == 0
    assert await events(runtime, "audit_purged") == 1  # nothing removed, nothing recorded


async def test_finished_power_actions_are_kept_a_week(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Every session end leaves a reset action: finished ones go after
    `action_retention_days`; one still queued stays, however old."""
    await reporting_host(runtime, client, 1)
    async with runtime.db.write() as s:
        host_id = await s.scalar(select(Host.id))
        assert host_id is not None
        for days, state in ((30, "queued"), (8, "done"), (8, "failed"), (6, "done")):
            when = clock.now() - dt.timedelta(days=days)
            action_id = await actions.queue(
                s, when, host_id=host_id, desktop_id=None, desktop_name=f"d{days}{state}",
                kind=ActionKind.RESET, reason="recycle",
            )  # fmt: skip
            if state != "queued":
                await s.execute(
                    update(HostAction)
                    .where(HostAction.id == action_id)
                    .values(state=state, finished_at=when)
                )
    await purge(runtime)
    async with runtime.db.read() as s:
        kept = (
            await s.scalars(select(HostAction.desktop_name).order_by(HostAction.desktop_name))
        ).all()
    assert kept == ["d30queued", "d6done"]


async def test_desktops_missing_for_a_week_are_forgotten_unless_in_use(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Deleted VMs would stay in the capacity figures and dashboards as missing
    for good: after `missing_desktop_retention_days` they are forgotten, but not
    one an open session still holds."""
    await add_pool(runtime)
    agent = await reporting_host(runtime, client, 4)
    maria, erna = await staff(runtime, "maria"), await staff(runtime, "erna")
    held = (await ask(client, maria)).json()["session"]
    ended = (await ask(client, erna)).json()["session"]
    assert (held["desktop"], ended["desktop"]) == ("vhost01-d000", "vhost01-d001")
    await client.delete(f"/api/v1/sessions/{ended['id']}", headers=erna)
    for name in ("vhost01-d000", "vhost01-d001"):  # deleted on the hypervisor
        del agent.desktops[name]
    await agent.report()
    clock.advance(2 * 86400)
    del agent.desktops["vhost01-d002"]
    await agent.report()
    clock.advance(6 * 86400)

    await purge(runtime)

    assert await desktop_names(runtime) == ["vhost01-d000", "vhost01-d002", "vhost01-d003"]
    async with runtime.db.read() as s:
        forgotten = (
            await s.scalars(select(AuditEvent).where(AuditEvent.event == "desktops_forgotten"))
        ).one()
        # The ended session stays in the history, without its desktop.
        assert await s.scalar(select(Session.desktop_id).where(Session.id == ended["id"])) is None
    assert forgotten.detail is not None
    assert (forgotten.detail["desktops"], forgotten.detail["names"]) == (1, ["vhost01-d001"])
    await purge(runtime)
    assert await events(runtime, "desktops_forgotten") == 1  # nothing more, nothing recorded

    # A VM of that name that comes back is a new desktop.
    again = agent.desktops["vhost01-d003"].model_copy(update={"name": "vhost01-d001"})
    agent.desktops["vhost01-d001"] = again
    await agent.report()
    assert "vhost01-d001" in await desktop_names(runtime)


async def desktop_names(rt: Runtime) -> list[str]:
    async with rt.db.read() as s:
        return list((await s.scalars(select(Desktop.name).order_by(Desktop.name))).all())


async def test_key_rotation_keeps_logins_and_csrf_working(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    from broker.security.rotation import rotate_key

    secret = await add_user(runtime)
    first = await login(client, "maria", code=code_now(runtime, secret or ""))
    csrf = first.json()["csrf_token"]
    old_key = runtime.box.current_key_id
    key_id, moved = await rotate_key(runtime, "test")
    assert key_id != old_key and moved == 1
    assert SecretBox.from_file(runtime.settings.key_file).current_key_id == key_id
    # A CSRF token made under the old key still checks ...
    out = await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 200
    # ... and the TOTP secret, re-encrypted under the new key, still verifies.
    clock.advance(30)
    again = await login(client, "maria", code=code_now(runtime, secret or ""))
    assert again.status_code == 200
    assert await events(runtime, "key_rotated") == 1


async def test_a_running_broker_reads_the_key_file_again_after_a_rotation(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """`vdi-broker keys rotate` runs in a process of its own and re-encrypts every
    TOTP secret under the new key. The serving broker, which read the key file
    at start, used to answer every login with a 500 until it was restarted."""
    from broker.security.rotation import rotate_key

    secret = await add_user(runtime)
    cli = await open_runtime(runtime.settings, clock=clock)  # as `vdi-broker keys rotate`
    try:
        key_id, _ = await rotate_key(cli, "admin")
    finally:
        await cli.close()
    again = await login(client, "maria", code=code_now(runtime, secret or ""))
    assert again.status_code == 200, again.text
    assert runtime.box.current_key_id == key_id  # new secrets go under the new key


async def test_a_replica_without_the_new_key_answers_503_until_the_file_is_copied(
    runtime: Runtime,
    client: httpx.AsyncClient,
    clock: FakeClock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another replica rotated the keys; this one's key file lacks the new key
    until the operator copies it. Its logins are a 503 that says to try later
    (not a 500), the journal says what to do, and once the file is in place
    logins work without a restart."""
    from broker.security.rotation import rotate_key

    secret = await add_user(runtime)
    other_data = tmp_path / "other-replica"
    other_data.mkdir(mode=0o700)
    shutil.copy2(runtime.settings.key_file, other_data / runtime.settings.key_file.name)
    other_settings = runtime.settings.model_copy(update={"data_dir": other_data})
    other = await open_runtime(other_settings, clock=clock)
    try:
        key_id, _ = await rotate_key(other, "admin")
    finally:
        await other.close()
    with caplog.at_level(logging.ERROR, logger="broker.security.crypto"):
        refused = await login(client, "maria", code=code_now(runtime, secret or ""))
        await login(client, "maria", code=code_now(runtime, secret or ""))
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"] == "key_unavailable"
    said = [r.getMessage() for r in caplog.records if r.name == "broker.security.crypto"]
    assert len(said) == 1, said  # once, not per login
    assert key_id in said[0] and "copy the key file" in said[0]
    # Not a wrong factor: no failures counted towards a lock-out, and audited.
    async with runtime.db.read() as s:
        user = (await s.scalars(select(User).where(User.name == "maria"))).one()
        audited = (
            await s.scalars(select(AuditEvent.result).where(AuditEvent.event == "login"))
        ).all()
    assert user.failed_logins == 0
    assert audited.count("unavailable") == 2
    shutil.copy2(other_settings.key_file, runtime.settings.key_file)
    clock.advance(30)
    assert (await login(client, "maria", code=code_now(runtime, secret or ""))).status_code == 200


def test_host_token_rotation_and_backup_from_the_cli(tmp_path: Path) -> None:
    env = new_broker_env(tmp_path / "data")
    first = json.loads(vdi_broker("host", "add", "vhost01", "--json", env=env).stdout)["token"]
    second = json.loads(vdi_broker("host", "rotate-token", "vhost01", "--json", env=env).stdout)[
        "token"
    ]
    assert first != second
    missing = vdi_broker("host", "rotate-token", "nope", env=env)
    assert missing.returncode == 2 and "no host" in missing.stderr

    target = tmp_path / "backup.sqlite3"
    done = vdi_broker("db", "backup", str(target), env=env)
    assert done.returncode == 0, done.stderr
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    with sqlite3.connect(target) as conn:
        assert conn.execute("SELECT name FROM hosts").fetchall() == [("vhost01",)]
    again = vdi_broker("db", "backup", str(target), env=env)
    assert again.returncode == 2 and "exists already" in again.stderr
    # A directory that is not there: one line that says so, no traceback.
    nowhere = tmp_path / "no such dir" / "backup.sqlite3"
    lost = vdi_broker("db", "backup", str(nowhere), env=env)
    assert lost.returncode == 2 and lost.stdout == ""
    assert lost.stderr == (
        f"error: Cannot write the backup to {nowhere}: No such file or directory.\n"
    )
    assert not nowhere.parent.exists()

    rotated = vdi_broker("keys", "rotate", env=env)
    assert rotated.returncode == 0 and "New current key" in rotated.stdout


def test_a_backup_that_fails_half_way_leaves_no_file(tmp_path: Path) -> None:
    """The disk fills up during the copy (here a file-size limit of half the
    database, set with prlimit): one line that says so, and no half a backup
    that would look like a whole one."""
    env = new_broker_env(tmp_path / "data")
    assert vdi_broker("host", "add", "vhost01", env=env).returncode == 0
    with closing(sqlite3.connect(tmp_path / "data" / "vdi-broker.sqlite3")) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    target = tmp_path / "backup.sqlite3"
    failed = subprocess.run(
        ["prlimit", f"--fsize={pages * page_size // 2}", str(VENV_BIN / "vdi-broker"),
         "db", "backup", str(target)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert failed.returncode == 2 and failed.stdout == ""
    assert failed.stderr.startswith(f"error: The backup to {target} failed and was removed: ")
    assert len(failed.stderr.splitlines()) == 1
    assert not target.exists()
    # Without the limit the same backup works.
    assert vdi_broker("db", "backup", str(target), env=env).returncode == 0
    assert target.exists()
