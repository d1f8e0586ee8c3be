"""What names of users, departments, pools, hosts and teams may look like."""

from __future__ import annotations

import re
from collections.abc import Iterable

from broker.errors import InvalidInput

# Login names: what directories and the SSH gateway handle without surprises.
USER_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
# Labels people read (departments, pools, teams, priority classes): letters of any
# script, digits, space, dot, dash, underscore; Prometheus label values too.
LABEL_RE = re.compile(r"[^\W_][\w .-]{0,63}")
HOST_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,127}")


def normalise_user_name(name: str) -> str:
    return name.strip().lower()


def check_user_name(name: str) -> str:
    name = normalise_user_name(name)
    if not USER_NAME_RE.fullmatch(name):
        raise InvalidInput(
            "A user name has 1 to 64 characters: a-z, 0-9, dot, dash, underscore; "
            "it starts with a letter or digit.",
            code="invalid_name",
        )
    return name


def check_label(value: str, what: str) -> str:
    value = value.strip()
    if not LABEL_RE.fullmatch(value) or value != value.rstrip():
        raise InvalidInput(
            f"A {what} name has 1 to 64 characters: letters, digits, space, dot, dash, "
            "underscore; it starts with a letter or digit.",
            code="invalid_name",
        )
    return value


def check_host_name(name: str) -> str:
    if not HOST_NAME_RE.fullmatch(name):
        raise InvalidInput(
            "A host name has 1 to 128 characters: A-Z, a-z, 0-9, dot and dash.",
            code="invalid_name",
        )
    return name


def same_but_case(name: str, taken: Iterable[str]) -> str | None:
    """The name in `taken` that `name` differs from in case only, or None. Pools
    and hosts keep the case they are given, but two names that differ in case
    alone ("Finanzen", "finanzen"; "vhost01", "VHOST01", one machine to DNS) are
    one thing to the people who read them in the portal and on dashboards."""
    folded = name.casefold()
    return next((t for t in taken if t.casefold() == folded), None)
