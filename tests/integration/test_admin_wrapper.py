"""The wrapper docs/operations.md has the admin install as /usr/local/sbin/vdi-broker,
run as written (paths moved into a temporary directory, no user switch)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.support.processes import REPO, VENV_BIN, clean_env


def wrapper(tmp_path: Path) -> Path:
    text = (REPO / "docs" / "operations.md").read_text()
    (script,) = [b for b in re.findall(r"```sh\n(.*?)```", text, re.S) if "/usr/local/sbin" in b]
    for shipped, here in (
        ("/opt/vdi-broker/bin/", f"{VENV_BIN}/"),
        ("/etc/vdi-broker/", f"{tmp_path}/etc/"),
        ("/var/lib/vdi-broker", f"{tmp_path}/data"),
        ("runuser -u vdi-broker -- ", ""),
    ):
        assert shipped in script, shipped
        script = script.replace(shipped, here)
    path = tmp_path / "vdi-broker"
    path.write_text(script)
    path.chmod(0o755)
    return path


def test_the_wrapper_hands_the_database_ca_file_to_commands(
    tmp_path: Path, pg_database: str
) -> None:
    """The guide puts PGSSLROOTCERT in broker.env for a database reached over TLS;
    the wrapper passed on VDI_* lines only, so every command looked for the CA
    in the home directory vdi-broker does not have and could not connect."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "broker.toml").write_text("")
    ca = tmp_path / "etc" / "db-ca.pem"  # missing: the command names it, so it got it
    url = f"postgresql://postgres@127.0.0.1:5432/{pg_database}?sslmode=verify-full"
    (tmp_path / "etc" / "broker.env").write_text(
        f"# comment\nVDI_DATABASE_URL={url}\nPGSSLROOTCERT={ca}\nVDI_LOG_LEVEL=INFO\n"
    )
    result = subprocess.run(
        [str(wrapper(tmp_path)), "host", "list"],
        env=clean_env({"HOME": str(tmp_path / "nohome")}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert f"PGSSLROOTCERT={ca} cannot be read" in result.stderr, result.stderr
