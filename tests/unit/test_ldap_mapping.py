"""From directory groups to role, department, work mode, priority and team (pure)."""

from __future__ import annotations

from broker.auth.ldap import DirectoryUser, map_groups
from broker.config import LdapSettings
from broker.domain import Role, WorkMode

STAFF = "cn=vdi-staff,ou=groups,dc=musterstadt,dc=de"
ADMINS = "cn=vdi-admins,ou=groups,dc=musterstadt,dc=de"
FIELD = "cn=aussendienst,ou=groups,dc=musterstadt,dc=de"
CRISIS = "cn=krisenstab,ou=groups,dc=musterstadt,dc=de"
BAUHOF = "cn=dept-bauhof,ou=groups,dc=musterstadt,dc=de"

CFG = LdapSettings(
    url="ldap://127.0.0.1",
    staff_groups=[STAFF],
    admin_groups=[ADMINS],
    field_groups=[FIELD],
    priority_groups={CRISIS: "Krisenstab"},
    team_groups={CRISIS: "Stab"},
    department_groups={BAUHOF: "Bauhof"},
)


def user(*groups: str, department: str | None = "Bürgerbüro") -> DirectoryUser:
    return DirectoryUser(
        dn="uid=x,ou=people,dc=musterstadt,dc=de",
        name="x",
        groups=frozenset(g.lower() for g in groups),
        department=department,
    )


def test_staff_member_with_department_attribute() -> None:
    mapped = map_groups(user(STAFF), CFG)
    assert mapped is not None
    assert (mapped.role, mapped.department, mapped.work_mode) == (
        Role.STAFF,
        "Bürgerbüro",
        WorkMode.HOME,
    )
    assert mapped.priority_class is None and mapped.team is None


def test_admin_field_priority_team_and_department_group() -> None:
    mapped = map_groups(user(ADMINS, FIELD, CRISIS, BAUHOF), CFG)
    assert mapped is not None
    assert mapped.role is Role.ADMIN
    assert mapped.work_mode is WorkMode.FIELD
    assert (mapped.priority_class, mapped.team) == ("Krisenstab", "Stab")
    assert mapped.department == "Bauhof"  # a department group beats the attribute


def test_group_names_compare_case_insensitively() -> None:
    assert map_groups(user(STAFF.upper()), CFG) is not None


def test_outsiders_and_users_without_department_may_not_log_in() -> None:
    assert map_groups(user(FIELD), CFG) is None
    assert map_groups(user(STAFF, department=None), CFG) is None


def test_without_configured_groups_everyone_with_a_department_may() -> None:
    open_cfg = LdapSettings(url="ldap://127.0.0.1")
    assert map_groups(user(), open_cfg) is not None
