"""Settings as people write them: the database URL (broker.store.database_url),
errors that never show it (broker.config.describe_invalid), and VDI_* variables
that set nothing (broker.config.unknown_variables)."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from broker.config import Settings, describe_invalid, unknown_variables
from broker.store.database_url import BadDatabaseUrl, normalise


@pytest.mark.parametrize(
    ("written", "used"),
    [
        ("postgresql://vdi:pw@db:5432/vdi", "postgresql+asyncpg://vdi:pw@db:5432/vdi"),
        ("postgres://vdi@db/vdi", "postgresql+asyncpg://vdi@db/vdi"),
        ("postgresql+asyncpg://vdi@db/vdi", "postgresql+asyncpg://vdi@db/vdi"),
        ("sqlite:////var/lib/vdi/x.sqlite3", "sqlite+aiosqlite:////var/lib/vdi/x.sqlite3"),
        # libpq's name for TLS, and the password kept as written (escaped "@").
        (
            "postgresql://vdi:p%40ss@db/vdi?sslmode=verify-full",
            "postgresql+asyncpg://vdi:p%40ss@db/vdi?ssl=verify-full",
        ),
        ("postgresql://vdi@db/vdi?ssl=require", "postgresql+asyncpg://vdi@db/vdi?ssl=require"),
    ],
)
def test_urls_people_write_become_the_async_drivers(written: str, used: str) -> None:
    assert normalise(written) == used


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://vdi:geheim@db:port/vdi", "its port is not a number"),
        ("postgresql//vdi:geheim@db/vdi", "it is not a URL"),
        ("mysql://vdi:geheim@db/vdi", "does not use 'mysql' databases"),
        ("postgresql+psycopg://vdi:geheim@db/vdi", "does not use 'postgresql+psycopg'"),
        ("postgresql://vdi:geheim@db/vdi?sslmode=require&ssl=require", "both sslmode and ssl"),
        ("postgresql://vdi:geheim@db/vdi?sslcert=c.pem&sslkey=k", "does not take sslcert, sslkey"),
    ],
)
def test_a_url_that_cannot_connect_is_refused_without_quoting_it(url: str, problem: str) -> None:
    with pytest.raises(BadDatabaseUrl, match=re.escape(problem)) as refused:
        normalise(url)
    assert "geheim" not in str(refused.value)


def test_settings_errors_show_values_but_not_the_database_url() -> None:
    with pytest.raises(ValidationError) as invalid:
        Settings(database_url="postgresql://vdi:geheim@db:port/vdi", http_port="abc")
    described = describe_invalid(invalid.value)
    assert "geheim" in str(invalid.value)  # pydantic's own text would have shown it
    assert "geheim" not in described
    assert "  database_url: its port is not a number" in described.splitlines()
    assert "(given: 'abc')" in described


def test_a_variable_that_sets_nothing_is_named_with_the_setting_meant() -> None:
    environ = {
        "VDI_HTTP_PROT": "8443",
        "vdi_http_port": "8443",  # the environment is read regardless of case
        "VDI_LOAD_INDEX__CPU_IDLE": "0.2",
        "VDI_LOAD_INDEX__CPU_WEIGHT": "2",
        "VDI_LDAP__DEPARTMENT_GROUPS__cn=bau": "Bauamt",  # a key of a table
        "VDIX": "1",
        "PATH": "/usr/bin",
    }
    assert unknown_variables(environ) == [
        "VDI_HTTP_PROT is not a setting (did you mean VDI_HTTP_PORT?)",
        "VDI_LOAD_INDEX__CPU_WEIGHT is not a setting (did you mean VDI_LOAD_INDEX__CPU_IDLE?)",
    ]


@pytest.mark.parametrize(
    ("written", "read"),
    [
        ("10.20.0.0/24", ["10.20.0.0/24"]),
        ("10.20.0.0/24, 10.30.0.0/24", ["10.20.0.0/24", "10.30.0.0/24"]),
        ('["10.20.0.0/24", "fd00::/8"]', ["10.20.0.0/24", "fd00::/8"]),
        ("", []),
    ],
)
def test_networks_in_the_environment_are_a_list_separated_by_commas_or_json(
    monkeypatch: pytest.MonkeyPatch, written: str, read: list[str]
) -> None:
    monkeypatch.setenv("VDI_METRICS_NETWORKS", written)
    monkeypatch.setenv("VDI_GATEWAY_DESKTOP_NETWORKS", written)
    settings = Settings()
    assert settings.metrics_networks == settings.gateway_desktop_networks == read


def test_a_network_list_that_is_broken_json_is_a_settings_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VDI_TRUSTED_PROXIES", '["10.0.0.1/32"')
    with pytest.raises(ValidationError) as invalid:
        Settings()
    assert describe_invalid(invalid.value).startswith("  trusted_proxies: ")
