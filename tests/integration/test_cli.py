"""The `vdi-broker` admin CLI as a person runs it: a real process on a real database."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

from broker.gateway import hostkey
from broker.ports import free_port
from broker.security.tokens import token_hash
from tests.support.processes import VENV_BIN, clean_env, new_broker_env, vdi_broker
from tests.support.terminal import Terminal

GOOD_PASSWORD = "Gutes Passwort 2026!"
ADD_POOL_P = ["pool", "add", "P", "--type", "floating", "--protocol", "rdp", "--max-sessions"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return new_broker_env(tmp_path / "data")


def db_rows(env: dict[str, str], sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(Path(env["VDI_DATA_DIR"]) / "vdi-broker.sqlite3") as conn:
        return conn.execute(sql).fetchall()


def test_users_pools_hosts_round_trip(env: dict[str, str]) -> None:
    added = vdi_broker(
        "user",
        "add",
        "Maria",
        "--department",
        "Finanzen",
        "--priority",
        "Krisenstab",
        "--team",
        "Stab A",
        "--password-stdin",
        env=env,
        input=GOOD_PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    assert "User maria added" in added.stdout

    enrolled = vdi_broker("user", "totp-enroll", "maria", env=env)
    assert enrolled.returncode == 0, enrolled.stderr
    assert "otpauth://totp/VDI:maria?secret=" in enrolled.stdout
    assert "█" in enrolled.stdout or "▀" in enrolled.stdout  # the QR code

    pool = vdi_broker(
        "pool",
        "add",
        "Finanzen",
        "--type",
        "floating",
        "--protocol",
        "rdp",
        "--max-sessions",
        "40",
        "--departments",
        "Finanzen,Kämmerei",
        env=env,
    )
    assert pool.returncode == 0, pool.stderr
    assert "open to everybody" not in pool.stdout
    open_pool = vdi_broker(
        "pool", "add", "Alle", "--type", "floating", "--protocol", "rdp", "--max-sessions", "5",
        env=env,
    )  # fmt: skip
    assert "It is open to everybody" in open_pool.stdout

    host = vdi_broker("host", "add", "vhost01", "--json", env=env)
    assert host.returncode == 0, host.stderr
    created = json.loads(host.stdout)
    assert created["name"] == "vhost01" and len(created["token"]) >= 43
    stored = db_rows(env, "SELECT token_hash FROM hosts")
    assert stored == [(token_hash(created["token"]),)]

    users = json.loads(vdi_broker("user", "list", "--json", env=env).stdout)
    assert users == [
        {
            "name": "maria",
            "department": "Finanzen",
            "role": "staff",
            "work_mode": "home",
            "priority_class": "Krisenstab",
            "team": "Stab A",
            "auth_source": "local",
            "totp_enrolled": True,
            "locked": False,
            "disabled": False,
            "failed_logins": 0,
            "last_login_at": None,
        }
    ]
    pools = {p["name"]: p for p in json.loads(vdi_broker("pool", "list", "--json", env=env).stdout)}
    assert pools["Finanzen"]["departments"] == ["Finanzen", "Kämmerei"]
    assert pools["Finanzen"]["max_sessions"] == 40
    assert pools["Alle"]["departments"] == []
    hosts = json.loads(vdi_broker("host", "list", "--json", env=env).stdout)
    assert [(h["name"], h["state"], h["up"]) for h in hosts] == [("vhost01", "active", False)]

    assert vdi_broker("host", "drain", "vhost01", env=env).returncode == 0
    hosts = json.loads(vdi_broker("host", "list", "--json", env=env).stdout)
    assert hosts[0]["state"] == "draining"

    table = vdi_broker("user", "list", env=env).stdout
    assert table.splitlines()[0].split()[:3] == ["NAME", "DEPARTMENT", "ROLE"]

    assert vdi_broker("user", "lock", "maria", env=env).returncode == 0
    assert db_rows(env, "SELECT disabled FROM users") == [(1,)]
    assert vdi_broker("user", "unlock", "maria", env=env).returncode == 0
    assert vdi_broker("user", "reset-totp", "maria", env=env).returncode == 0
    assert db_rows(env, "SELECT totp_secret FROM users") == [(None,)]

    audit = json.loads(vdi_broker("audit", "--json", env=env).stdout)
    assert [e["event"] for e in audit[:3]] == ["totp_reset", "user_unlocked", "user_locked"]
    # `detail` is an object, as the admin API gives it; the table shows it as text.
    added = next(e for e in audit if e["event"] == "host_added")
    assert added["detail"] == {"host": "vhost01"}
    assert all(isinstance(e["detail"], dict) for e in audit)
    table = vdi_broker("audit", "--event", "host_added", env=env).stdout
    assert table.splitlines()[1].endswith('{"host": "vhost01"}')
    # User names match in any case, as everywhere else.
    about_maria = json.loads(vdi_broker("audit", "--user", "MARIA", "--json", env=env).stdout)
    assert [e["event"] for e in about_maria[:3]] == ["totp_reset", "user_unlocked", "user_locked"]
    status = vdi_broker("status", env=env)
    assert "Hosts: 1 registered, 0 up, 1 draining" in status.stdout
    # Capacity per pool at a glance: no host is up, so nothing is usable yet.
    rows = {line.split()[0]: line.split()[1:] for line in status.stdout.splitlines() if line}
    assert rows["POOL"] == [
        "IN_USE",
        "USABLE",
        "FREE",
        "OUT_OF_SERVICE",
        "LICENCES",
        "IF_LARGEST_HOST_FAILS",
    ]
    assert rows["Finanzen"] == ["0", "0", "0", "0", "40", "0"]


def test_totp_enroll_names_the_account_as_stored(env: dict[str, str]) -> None:
    added = vdi_broker(
        "user", "add", "maria", "--department", "Finanzen", "--password-stdin",
        env=env, input=GOOD_PASSWORD + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    # Typed as the administrator remembers it: the account is found, and the
    # header the secret is handed over with names it as the URI does.
    enrolled = vdi_broker("user", "totp-enroll", " Maria", env=env)
    assert enrolled.returncode == 0, enrolled.stderr
    assert enrolled.stdout.startswith("TOTP secret for maria (hand it over in person")
    assert "otpauth://totp/VDI:maria?secret=" in enrolled.stdout


def test_totp_enroll_on_a_terminal_that_is_not_utf8_still_shows_the_secret(
    env: dict[str, str],
) -> None:
    """The QR code's blocks cannot be written to a Latin-1 terminal. The new
    secret is stored before it is printed and shown only this once, so the
    command leaves the QR code out and shows the key, rather than fail."""
    added = vdi_broker(
        "user", "add", "maria", "--department", "Finanzen", "--password-stdin",
        env=env, input=GOOD_PASSWORD + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    latin1 = {**env, "PYTHONIOENCODING": "latin-1"}  # what a Latin-1 locale gives Python
    enrolled = vdi_broker("user", "totp-enroll", "maria", env=latin1)
    assert enrolled.returncode == 0, enrolled.stderr
    assert "No QR code: this terminal is not UTF-8" in enrolled.stdout
    key = enrolled.stdout.split("Manual key:")[1].split()[0]
    assert f"otpauth://totp/VDI:maria?secret={key}&" in enrolled.stdout
    assert enrolled.stdout.count("\n  ") == 10  # the recovery codes
    assert json.loads(vdi_broker("user", "list", "--json", env=env).stdout)[0]["totp_enrolled"]


def test_names_a_terminal_cannot_show_are_escaped_not_a_traceback(env: dict[str, str]) -> None:
    """Pool names may hold any letter; a Latin-1 terminal has no "Ł". The pool is
    added and said so, with an escape for the letter (a valid one in --json),
    rather than a traceback after the change was stored."""
    latin1 = {**env, "PYTHONIOENCODING": "latin-1"}  # what a Latin-1 locale gives Python
    added = vdi_broker(*ADD_POOL_P[:2], "Łask", *ADD_POOL_P[3:], "1", env=latin1)
    assert added.returncode == 0, added.stderr
    assert "Pool \\u0141ask added" in added.stdout
    listed = vdi_broker("pool", "list", "--json", env=latin1)
    assert listed.returncode == 0, listed.stderr
    assert [p["name"] for p in json.loads(listed.stdout)] == ["Łask"]


async def test_ctrl_d_at_the_password_prompt_adds_nobody(env: dict[str, str]) -> None:
    """A person who gives up at the password prompt (Ctrl-D on a terminal) gets
    one line and exit 2, not a traceback, and no user is added."""
    argv = [str(VENV_BIN / "vdi-broker"), "user", "add", "kurt", "--department", "IT"]
    term = Terminal(argv, env)
    try:
        await term.expect("Password: ")
        term.end_of_input()
        await term.expect("error: No password given")
        assert await term.exit_code() == 2
    finally:
        term.kill()
    assert "Traceback" not in term.seen
    assert db_rows(env, "SELECT count(*) FROM users") == [(0,)]


async def test_a_taken_user_name_is_refused_before_the_password_prompt(
    env: dict[str, str],
) -> None:
    """Nobody types a password twice to learn that the name was taken."""
    added = vdi_broker(
        "user", "add", "kurt", "--department", "IT", "--password-stdin",
        env=env, input=GOOD_PASSWORD + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    argv = [str(VENV_BIN / "vdi-broker"), "user", "add", " Kurt", "--department", "IT"]
    term = Terminal(argv, env)
    try:
        await term.expect("error: A user named 'kurt' exists already.")
        assert await term.exit_code() == 2
    finally:
        term.kill()
    assert "Password" not in term.seen
    assert db_rows(env, "SELECT name, department FROM users") == [("kurt", "IT")]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (
            ["user", "add", "bad name", "--department", "IT", "--password-stdin"],
            GOOD_PASSWORD,
            "user name",
        ),
        (
            ["user", "add", "kurt", "--department", "IT", "--password-stdin"],
            "password",
            "commonly used",
        ),
        (["user", "add", "kurt", "--department", "IT", "--password-stdin"], "short", "at least 8"),
        (
            ["user", "add", "kurt", "--department", "I\tT", "--password-stdin"],
            GOOD_PASSWORD,
            "department",
        ),
        (["user", "add", "kurt", "--department", "IT", "--role", "root"], None, "invalid choice"),
        (["user", "lock", "nobody"], None, "no user"),
        (
            ["pool", "add", "P", "--type", "floating", "--protocol", "rdp", "--max-sessions", "-1"],
            None,
            "licence count",
        ),
        (
            ["pool", "add", "P", "--type", "shared", "--protocol", "rdp", "--max-sessions", "1"],
            None,
            "invalid choice",
        ),
        (
            [*ADD_POOL_P, "1", "--departments", ",,"],
            None,
            "names no department",
        ),
        (["host", "add", "bad host!"], None, "host name"),
        (["host", "drain", "ghost"], None, "no host"),
        (["user", "add", "kurt", "--department", "IT"], None, "--password-stdin"),
    ],
)
def test_bad_input_fails_clearly_and_changes_nothing(
    env: dict[str, str], args: list[str], stdin: str | None, message: str
) -> None:
    assert vdi_broker("db", "upgrade", env=env).returncode == 0
    before = (
        db_rows(env, "SELECT count(*) FROM users")
        + db_rows(env, "SELECT count(*) FROM pools")
        + db_rows(env, "SELECT count(*) FROM hosts")
    )
    result = vdi_broker(*args, env=env, input=(stdin + "\n") if stdin else "")
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    after = (
        db_rows(env, "SELECT count(*) FROM users")
        + db_rows(env, "SELECT count(*) FROM pools")
        + db_rows(env, "SELECT count(*) FROM hosts")
    )
    assert after == before


def test_duplicates_are_refused(env: dict[str, str]) -> None:
    assert vdi_broker("host", "add", "vhost01", env=env).returncode == 0
    assert vdi_broker(*ADD_POOL_P, "1", "--departments", "Bürgerbüro", env=env).returncode == 0
    # The same name, or one that differs in case only: before, the second spelling
    # became a second host (one machine to DNS, one of them never reporting) or a
    # second pool beside the first in the portal and on the dashboards.
    for again in (
        ["host", "add", "vhost01"],
        ["host", "add", "VHost01"],
        [*ADD_POOL_P, "1"],
        ["pool", "add", "p", "--type", "floating", "--protocol", "rdp", "--max-sessions", "1"],
    ):
        refused = vdi_broker(*again, env=env)
        assert refused.returncode == 2, again
        assert "exists already" in refused.stderr
    assert db_rows(env, "SELECT name FROM hosts") == [("vhost01",)]
    assert db_rows(env, "SELECT name FROM pools") == [("P",)]


# "Müller" typed in a Latin-1 terminal: Python keeps the byte 0xFC as a lone surrogate.
LATIN1_NAME = "M\udcfcller"


@pytest.mark.parametrize(
    "args",
    [
        ["user", "lock", LATIN1_NAME],
        ["user", "totp-enroll", LATIN1_NAME],
        ["host", "drain", LATIN1_NAME],
        ["pool", "set", LATIN1_NAME, "--max-sessions", "1"],
        ["pool", "revoke", "P", "--department", LATIN1_NAME],
        ["policy", "priority", "remove", LATIN1_NAME],
        ["session", "end", LATIN1_NAME],
        ["audit", "--user", LATIN1_NAME],
    ],
)
def test_arguments_that_are_not_utf8_are_refused_clearly(
    env: dict[str, str], args: list[str]
) -> None:
    """Before: a traceback (UnicodeEncodeError in the database driver)."""
    result = vdi_broker(*args, env=env)
    assert result.returncode == 2
    assert "is not UTF-8 text" in result.stderr and "Traceback" not in result.stderr


def test_a_password_that_is_not_utf8_is_refused_clearly(env: dict[str, str]) -> None:
    """Before: a traceback from password hashing (or the stdin decoder) that
    quoted a character of the password."""
    for errors in ("surrogateescape", "strict"):  # the C.UTF-8 and a de_DE.UTF-8 locale
        result = subprocess.run(
            [str(VENV_BIN / "vdi-broker"), "user", "add", "erik", "--department", "IT",
             "--password-stdin"],
            env={**env, "PYTHONIOENCODING": f"utf-8:{errors}"},
            input="Geheimes Paßwort 2026\n".encode("latin-1"),
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        stderr = result.stderr.decode("utf-8", "replace")
        assert result.returncode == 2
        assert "The password is not UTF-8 text" in stderr and "Traceback" not in stderr
    assert db_rows(env, "SELECT count(*) FROM users") == [(0,)]


def test_a_file_name_may_be_any_bytes(env: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / f"{LATIN1_NAME}.sqlite3"
    result = subprocess.run(
        [str(VENV_BIN / "vdi-broker"), "db", "backup", str(target)],
        env=env, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert target.exists()


def test_config_file_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "broker.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "from-toml"}"\ntotp_issuer = "Stadt Musterhausen"\n'
    )
    env = clean_env()
    assert vdi_broker("--config", str(config), "db", "upgrade", env=env).returncode == 0
    added = vdi_broker(
        "--config",
        str(config),
        "user",
        "add",
        "jan",
        "--department",
        "IT",
        "--password-stdin",
        env=env,
        input=GOOD_PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    assert (tmp_path / "from-toml" / "vdi-broker.sqlite3").exists()
    enrolled = vdi_broker("--config", str(config), "user", "totp-enroll", "jan", env=env)
    assert "otpauth://totp/Stadt%20Musterhausen:jan" in enrolled.stdout
    # The environment overrides the file.
    env["VDI_DATA_DIR"] = str(tmp_path / "from-env")
    assert vdi_broker("--config", str(config), "db", "upgrade", env=env).returncode == 0
    assert (tmp_path / "from-env" / "vdi-broker.sqlite3").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text("http_port = 99999\n")
    result = vdi_broker("--config", str(bad), "status", env=env)
    assert result.returncode == 2 and "http_port" in result.stderr
    # A file that is no TOML, no text or no file: one line, no traceback.
    (tmp_path / "broken.toml").write_text("[[[\n")
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe")
    for path, problem in (
        (tmp_path / "broken.toml", "is not valid TOML"),
        (tmp_path / "binary.toml", "is not UTF-8 text"),
        (tmp_path, "is not a file"),
        (tmp_path / "missing.toml", "does not exist"),
    ):
        result = vdi_broker("--config", str(path), "status", env=env)
        assert result.returncode == 2 and problem in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_a_mistyped_setting_variable_is_refused_not_ignored(env: dict[str, str]) -> None:
    """VDI_HTTP_PROT=8443 in broker.env used to leave the broker on port 8000,
    without a word; the TOML file's unknown keys were refused already."""
    result = vdi_broker("status", env={**env, "VDI_HTTP_PROT": "8443"})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "error: VDI_HTTP_PROT is not a setting (did you mean VDI_HTTP_PORT?)\n"
    )


def test_list_settings_in_the_environment_as_an_env_file_writes_them(
    env: dict[str, str],
) -> None:
    """VDI_METRICS_NETWORKS=10.20.0.0/24, as one writes it in broker.env, was
    taken for JSON and stopped every command (and the service) with a traceback.
    Networks may be separated by commas; other lists and tables stay JSON, and a
    value that is not is one line."""
    assert vdi_broker("db", "upgrade", env=env).returncode == 0
    networks = {"VDI_METRICS_NETWORKS": "10.20.0.0/24, 10.30.0.0/24"}
    assert vdi_broker("status", env={**env, **networks}).returncode == 0
    table = vdi_broker("status", env={**env, "VDI_POOL_RULES": "vdi-fin-.*=Finanzen"})
    assert table.returncode == 2 and "Traceback" not in table.stderr
    assert table.stderr.startswith(
        'error: invalid configuration: error parsing value for field "pool_rules"'
    )


def test_an_unreachable_database_is_one_line_not_a_traceback(env: dict[str, str]) -> None:
    """No server listens on the port: the command says where it looked, without
    the password, and exits 2 like every other refusal."""
    url = f"postgresql://nobody:geheim@127.0.0.1:{free_port()}/vdi"
    result = vdi_broker("status", env={**env, "VDI_DATABASE_URL": url})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: the database postgresql+asyncpg://nobody:***@")
    assert "is not reachable" in result.stderr and "Connect call failed" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "geheim" not in result.stderr


def test_a_database_host_name_that_does_not_resolve_is_one_line(env: dict[str, str]) -> None:
    """A typo in the host name, or DNS down: before, a socket.gaierror traceback."""
    url = "postgresql://nobody:geheim@db.verwaltung.invalid/vdi"
    result = vdi_broker("status", env={**env, "VDI_DATABASE_URL": url})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: the database postgresql+asyncpg://nobody:***@")
    assert "is not reachable" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "geheim" not in result.stderr


def test_a_database_url_that_cannot_work_is_refused_without_its_password(
    env: dict[str, str],
) -> None:
    """Each of these used to end in a traceback at the first connection."""
    for url, problem in (
        ("postgresql://nobody:geheim@db:5432x/vdi", "its port is not a number"),
        ("mysql://nobody:geheim@db/vdi", "the broker does not use 'mysql' databases"),
        ("postgresql//nobody:geheim@db/vdi", "it is not a URL; write it as postgresql://"),
        (
            "postgresql://nobody:geheim@db/vdi?sslrootcert=ca.pem",
            "PostgreSQL does not take sslrootcert",
        ),
    ):
        result = vdi_broker("status", env={**env, "VDI_DATABASE_URL": url})
        assert result.returncode == 2 and result.stdout == ""
        assert f"database_url: {problem}" in result.stderr, result.stderr
        assert "geheim" not in result.stderr and "Traceback" not in result.stderr


def test_the_database_url_takes_sslmode_as_postgresql_tools_write_it(
    env: dict[str, str], pg_database: str
) -> None:
    """libpq's `?sslmode=` (psql, pg_dump, most guides) reached asyncpg as an
    argument it does not know: a TypeError traceback. It is asyncpg's `ssl`."""
    url = f"postgresql://postgres@127.0.0.1:5432/{pg_database}?sslmode="
    plain = vdi_broker("user", "list", "--json", env={**env, "VDI_DATABASE_URL": url + "disable"})
    assert plain.returncode == 0 and plain.stdout.startswith("["), plain.stderr
    # This server speaks no TLS: asking for it is refused, as psql refuses it.
    tls = vdi_broker("status", env={**env, "VDI_DATABASE_URL": url + "require"})
    assert tls.returncode == 2 and "rejected SSL upgrade" in tls.stderr, tls.stderr
    assert len(tls.stderr.splitlines()) == 1


def test_a_ca_file_that_cannot_be_read_is_named_in_one_line(
    env: dict[str, str], pg_database: str, tmp_path: Path
) -> None:
    """PGSSLROOTCERT naming a file that is missing, unreadable or no certificate
    ended `serve` and every command in asyncpg's FileNotFoundError traceback,
    which names no file. Now the setting is refused and the file named."""
    url = f"postgresql://postgres:geheim@127.0.0.1:5432/{pg_database}?sslmode=verify-full"
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("not a certificate\n")
    for path, said in (
        (tmp_path / "db-ca.pem", "cannot be read: No such file or directory"),
        (not_pem, "holds no PEM certificate"),
    ):
        broken = {**env, "VDI_DATABASE_URL": url, "PGSSLROOTCERT": str(path)}
        for command in (["status"], ["serve"]):
            result = vdi_broker(*command, env=broken)
            assert result.returncode == 2, result.stderr
            assert result.stderr == (
                f"error: invalid configuration:\n  database_url: PGSSLROOTCERT={path} {said}\n"
            )
    # Without TLS the file is not read, as psql does not read it.
    plain = {**env, "VDI_DATABASE_URL": url.replace("verify-full", "disable")}
    listed = vdi_broker("user", "list", "--json", env={**plain, "PGSSLROOTCERT": "/nonexistent"})
    assert listed.returncode == 0, listed.stderr


def test_commands_refuse_a_database_that_is_not_there(tmp_path: Path) -> None:
    """Run without the service's settings, a command used to make a new, empty
    database elsewhere and report on it ("(none)"), back it up or rotate its
    key. Now it says where it looked and makes nothing; `db upgrade` creates."""
    data = tmp_path / "not-the-brokers"
    env = clean_env({"VDI_DATA_DIR": str(data)})
    for command in (
        ["host", "list"],
        ["status"],
        ["keys", "rotate"],
        ["db", "backup", str(tmp_path / "b")],
    ):
        result = vdi_broker(*command, env=env)
        assert result.returncode == 2 and result.stdout == "", command
        assert result.stderr == (
            f"error: There is no database at {data / 'vdi-broker.sqlite3'}. Give the broker's "
            "settings (VDI_DATA_DIR, --config, VDI_DATABASE_URL), or create it with "
            "'vdi-broker db upgrade'.\n"
        )
    assert not data.exists() and not (tmp_path / "b").exists()
    assert vdi_broker("db", "upgrade", env=env).returncode == 0
    assert vdi_broker("host", "list", env=env).stdout == "(none)\n"


@pytest.mark.parametrize(
    ("where", "said"),
    [
        ("nobody_here:geheim@127.0.0.1:5432/postgres", 'role "nobody_here" does not exist'),
        ("postgres:geheim@127.0.0.1:5432/no_such_db_here", 'database "no_such_db_here" does'),
    ],
)
def test_a_database_that_refuses_the_login_is_one_line(
    env: dict[str, str], where: str, said: str
) -> None:
    """The server is up but will not let the broker in: a setting to correct,
    said in one line without the password, not a traceback."""
    result = vdi_broker("status", env={**env, "VDI_DATABASE_URL": f"postgresql://{where}"})
    assert result.returncode == 2 and result.stdout == ""
    assert "refused the broker's login" in result.stderr and said in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "geheim" not in result.stderr


def test_a_directory_that_cannot_be_made_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    """The data directory or the SQLite file's directory lies under a file."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for extra, what in (
        ({"VDI_DATA_DIR": str(blocker / "data")}, "the data directory"),
        (
            {"VDI_DATABASE_URL": f"sqlite+aiosqlite:///{blocker / 'db' / 'vdi.sqlite'}"},
            "the database's directory",
        ),
    ):
        result = vdi_broker("db", "upgrade", env={**env, **extra})
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.startswith(f"error: cannot create {what} {blocker}/")
        assert "Not a directory" in result.stderr and len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("limit", ["-1", "0", "10001", str(2**64), "x"])
def test_audit_limit_out_of_range_is_refused(env: dict[str, str], limit: str) -> None:
    result = vdi_broker("audit", "--limit", limit, env=env)
    assert result.returncode == 2
    assert "is not a whole number 1 to 10000" in result.stderr and result.stdout == ""


def test_output_into_a_closed_pipe_ends_quietly(env: dict[str, str]) -> None:
    """`vdi-broker audit | head -1`: the reader leaves early; no traceback."""
    assert vdi_broker("db", "upgrade", env=env).returncode == 0
    for i in range(3):
        vdi_broker("host", "add", f"vhost{i:02d}", env=env)
    reader, writer = os.pipe()
    os.close(reader)  # gone before the first line
    try:
        done = subprocess.run(
            [str(VENV_BIN / "vdi-broker"), "audit", "--json"],
            env=env, stdout=writer, stderr=subprocess.PIPE, text=True, timeout=60,
        )  # fmt: skip
    finally:
        os.close(writer)
    assert done.returncode == 0 and done.stderr == ""


def test_status_shows_the_gateway_host_key_fingerprint(env: dict[str, str]) -> None:
    key_file = Path(env["VDI_DATA_DIR"]) / "gateway_host_key"
    before = vdi_broker("status", env=env)
    assert before.returncode == 0, before.stderr
    assert "SSH gateway: 127.0.0.1:2222 (from this command's settings" in before.stdout
    assert "SSH gateway host key: (none yet" in before.stdout
    hostkey.load_or_create(key_file)  # what the broker's first start does
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # OpenSSH's own reading of the key gives the same fingerprint.
    keygen = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(key_file)], capture_output=True, text=True, check=True
    )
    expected = keygen.stdout.split()[1]
    assert expected.startswith("SHA256:")
    status = vdi_broker("status", env=env)
    assert f"SSH gateway host key: {expected}\n" in status.stdout
    off = vdi_broker("status", env={**env, "VDI_GATEWAY_ENABLED": "false"})
    assert "SSH gateway: off" in off.stdout
    key_file.chmod(0o644)
    refused = vdi_broker("status", env=env)
    assert refused.returncode == 2
    assert "chmod 600" in refused.stderr


def test_status_says_the_gateway_address_is_from_its_own_settings(env: dict[str, str]) -> None:
    """`status` does not ask a running broker where its gateway listens: a demo
    started with --gateway-port 2300 is not what `status` run beside it reads.
    The line says where its address comes from, and follows those settings."""
    moved = vdi_broker("status", env={**env, "VDI_GATEWAY_PORT": "2300"})
    assert moved.returncode == 0, moved.stderr
    gateway = next(line for line in moved.stdout.splitlines() if line.startswith("SSH gateway"))
    assert gateway == (
        "SSH gateway: 127.0.0.1:2300 (from this command's settings: --config, VDI_GATEWAY_*)"
    )
