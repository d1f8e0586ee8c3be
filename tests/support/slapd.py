"""A real OpenLDAP directory for tests: slapd with its own config and data.

Like Active Directory, users carry `memberOf` (the memberof overlay maintains
it); the server speaks ldap:// (with StartTLS) and ldaps:// with a certificate
from a CA the test makes.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from broker.ports import free_port
from tests.support.certs import ca_and_server

BASE = "dc=musterstadt,dc=de"
ADMIN_DN = f"cn=admin,{BASE}"
ADMIN_PASSWORD = "directory-admin-secret"
SERVICE_DN = f"cn=vdi-broker,ou=services,{BASE}"
SERVICE_PASSWORD = "service-account-secret"


@dataclass(frozen=True)
class Person:
    uid: str
    password: str
    groups: tuple[str, ...] = ()
    department: str | None = None


def group_dn(cn: str) -> str:
    return f"cn={cn},ou=groups,{BASE}"


def ldif_line(attribute: str, value: str) -> str:
    """One LDIF line; values outside plain ASCII go base64-encoded, as LDIF requires."""
    if value.isascii():
        return f"{attribute}: {value}\n"
    return f"{attribute}:: {base64.b64encode(value.encode()).decode()}\n"


class Slapd:
    def __init__(self, people: list[Person], groups: list[str]) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="vdi-slapd-"))
        (self.root / "db").mkdir()
        self.ca, cert, key = ca_and_server(self.root)
        self.port, self.tls_port = free_port(), free_port()
        conf = self.root / "slapd.conf"
        conf.write_text(f"""
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile {self.root}/slapd.pid
TLSCACertificateFile {self.ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
database mdb
maxsize 10485760
suffix "{BASE}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PASSWORD}
directory {self.root}/db
overlay memberof
access to attrs=userPassword by self write by anonymous auth by * none
access to * by dn.exact="{SERVICE_DN}" read by self read by * none
""")
        self.process = subprocess.Popen(
            [
                "slapd",
                "-d",
                "0",
                "-f",
                str(conf),
                "-h",
                f"ldap://127.0.0.1:{self.port}/ ldaps://127.0.0.1:{self.tls_port}/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait()
        self._load(people, groups)

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    def _wait(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"slapd exited: {self.process.stderr.read()!r}")  # type: ignore[union-attr]
            probe = subprocess.run(
                [
                    "ldapsearch",
                    "-x",
                    "-H",
                    self.url,
                    "-D",
                    ADMIN_DN,
                    "-w",
                    ADMIN_PASSWORD,
                    "-b",
                    "",
                    "-s",
                    "base",
                ],
                capture_output=True,
                check=False,
            )
            if probe.returncode in (0, 32):  # 32: no such object yet, but answering
                return
            time.sleep(0.1)
        raise TimeoutError("slapd did not start")

    def _load(self, people: list[Person], groups: list[str]) -> None:
        entries = [
            f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: musterstadt\n"
            "o: Stadt Musterstadt\n",
            f"dn: ou=people,{BASE}\nobjectClass: organizationalUnit\nou: people\n",
            f"dn: ou=groups,{BASE}\nobjectClass: organizationalUnit\nou: groups\n",
            f"dn: ou=services,{BASE}\nobjectClass: organizationalUnit\nou: services\n",
            f"dn: {SERVICE_DN}\nobjectClass: simpleSecurityObject\n"
            f"objectClass: organizationalRole\ncn: vdi-broker\n"
            f"userPassword: {self.hash(SERVICE_PASSWORD)}\n",
        ]
        for p in people:
            entry = (
                f"dn: uid={p.uid},ou=people,{BASE}\nobjectClass: inetOrgPerson\n"
                f"uid: {p.uid}\ncn: {p.uid.title()}\nsn: {p.uid.title()}\n"
                f"userPassword: {self.hash(p.password)}\n"
            )
            if p.department:
                entry += ldif_line("departmentNumber", p.department)
            entries.append(entry)
        for cn in groups:
            members = [f"uid={p.uid},ou=people,{BASE}" for p in people if cn in p.groups]
            entries.append(
                f"dn: {group_dn(cn)}\nobjectClass: groupOfNames\ncn: {cn}\n"
                + "".join(f"member: {m}\n" for m in members or [ADMIN_DN])
            )
        ldif = "\n".join(entries)
        subprocess.run(
            ["ldapadd", "-x", "-H", self.url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD],
            input=ldif.encode(),
            capture_output=True,
            check=True,
        )

    @staticmethod
    def hash(password: str) -> str:
        return subprocess.run(
            ["slappasswd", "-s", password], capture_output=True, text=True, check=True
        ).stdout.strip()

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def modify(self, ldif: str) -> None:
        subprocess.run(
            ["ldapmodify", "-x", "-H", self.url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD],
            input=ldif.encode(),
            capture_output=True,
            check=True,
        )
