"""The broker's one typed settings object.

Sources, highest priority first: keyword arguments (tests), `VDI_*` environment
variables, the TOML file given with `--config`, the defaults below. TOML keys are
the field names (`http_port = 8443`); nested groups are TOML tables
(`[load_index]`) and `VDI_LOAD_INDEX__CPU_IDLE` in the environment. A `VDI_*`
variable that names no setting is refused, as an unknown key in the file is.

Settings are built once at start-up and handed to the app; nothing else reads the
environment.
"""

from __future__ import annotations

import contextvars
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_origin

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from broker.gateway.slowdown import MAX_AUTH_DELAY_S
from broker.net import PRIVATE_NETWORKS
from broker.text import comma_separated, did_you_mean

# OWASP ASVS 5 / OWASP password storage cheat sheet minimum for argon2id.
ARGON2_MIN_MEMORY_KIB = 19456
ARGON2_MIN_TIME_COST = 2

_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "vdi_config_file", default=None
)


def default_data_dir() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "vdi-broker"


class LoadIndexSettings(BaseModel):
    """Weights and thresholds of the load index (see DESIGN.md, "Load index")."""

    cpu_idle: float = Field(0.1, ge=0, lt=1, description="CPU ratio that counts as idle")
    cpu_span: float = Field(0.8, gt=0, le=1, description="CPU ratio span from idle to full")
    memory_base_ratio: float = Field(
        0.1, ge=0, lt=1, description="share of memory in use on an empty host (hypervisor)"
    )
    memory_full_ratio: float = Field(0.9, gt=0, le=1)
    logon_tolerance: int = Field(2, ge=1, description="pending logons that make a host busy")
    others_weight: float = Field(0.1, ge=0, le=1, description="weight of the non-highest parts")
    team_penalty: float = Field(1.0, ge=0, description="added per critical-team member on host")
    full_index: float = Field(
        1.0, gt=0, le=1, description="a host at this index takes no new sessions"
    )


class LdapSettings(BaseModel):
    """Directory login (LDAP / Active Directory); off while `url` is empty."""

    url: str = ""
    start_tls: bool = False
    ca_file: Path | None = None
    bind_dn: str = ""
    bind_password_file: Path | None = None
    user_base: str = ""
    user_filter: str = "(&(objectClass=person)(uid={username}))"
    group_attribute: str = "memberOf"
    department_attribute: str = "departmentNumber"
    admin_groups: list[str] = []
    staff_groups: list[str] = []
    field_groups: list[str] = []
    priority_groups: dict[str, str] = {}
    team_groups: dict[str, str] = {}
    department_groups: dict[str, str] = {}
    timeout_s: float = Field(5.0, gt=0)


NETWORK_SETTINGS = (
    "trusted_proxies",
    "metrics_networks",
    "gateway_denied_networks",
    "gateway_desktop_networks",
)
# Networks in CIDR form. In an environment file they are written as a list
# separated by commas ("10.20.0.0/24, 10.30.0.0/24") or as a JSON list; TOML
# gives a list. NoDecode: the settings source hands the text over as it is,
# where it would otherwise take it for JSON and fail on anything else.
Networks = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VDI_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None

    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=0, le=65535)
    public_url: str | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    trusted_proxies: Networks = []
    # Who may read /metrics (the caller's address as trusted_proxies resolve it).
    # The figures say who works where (sessions per department and pool), so
    # they are for the monitoring network, not the internet the portal faces.
    # Default: loopback and the private ranges; ["0.0.0.0/0", "::/0"] opens it.
    metrics_networks: Networks = list(PRIVATE_NETWORKS)

    gateway_enabled: bool = True
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(2222, ge=0, le=65535)
    gateway_public_host: str | None = None
    # The port clients are told, where a load balancer or NAT maps another one
    # to `gateway_port`.
    gateway_public_port: int | None = Field(None, ge=1, le=65535)
    gateway_login_timeout_s: float = Field(30.0, gt=0)
    gateway_idle_timeout_s: float = Field(0.0, ge=0, description="0: no idle-traffic timeout")
    gateway_connect_timeout_s: float = Field(10.0, gt=0, description="gateway to desktop")
    # How often a replica marks its open tunnels alive in the database and
    # writes the sessions' last activity from their traffic. Tunnels not marked
    # for four of these belong to a replica that died and are cleaned up.
    gateway_activity_interval_s: float = Field(30.0, gt=0)
    # Delay before answering a login from a source with recent failures: this,
    # doubled per further failure, up to the maximum.
    gateway_auth_delay_s: float = Field(1.0, ge=0)
    # Counted per source and user name (see broker.gateway.slowdown); at most
    # MAX_AUTH_DELAY_S (30 s), which vdi-connect's wait for an answer exceeds.
    gateway_auth_delay_max_s: float = Field(16.0, ge=0, le=MAX_AUTH_DELAY_S)
    # Connections still logging in, per source (IPv4 address or IPv6 /64) and in
    # all. Beyond these a new connection is dropped before the SSH handshake.
    # Generous per source: a town hall's staff, or field workers on a mobile
    # carrier's NAT, share one address and log in at the same time of day.
    gateway_max_startups_per_source: int = Field(50, ge=1)
    gateway_max_startups: int = Field(500, ge=1)
    # Tunnels (channels) open or opening at once, per SSH connection and per
    # session on one replica. An RDP or VNC client needs a handful; each tunnel
    # holds two file descriptors, so without a cap one ticket could open
    # hundreds and starve the broker of them. A channel beyond a cap is refused
    # with no database work. Per session a little more, for a reconnect while the
    # old connection is not yet known to be gone.
    gateway_max_tunnels_per_connection: int = Field(16, ge=1)
    gateway_max_tunnels_per_session: int = Field(32, ge=1)
    # Desktops on 127.0.0.0/8 or ::1 are refused unless this is on: a desktop
    # address comes from an agent's report, and loopback would reach the
    # broker's own services. Only the demo and tests, whose simulated desktops
    # listen on 127.0.0.1, turn it on.
    gateway_allow_loopback: bool = False
    # Networks the gateway never forwards to, whatever an agent reports (the
    # database, management networks): ["10.0.9.0/24"].
    gateway_denied_networks: Networks = []
    # When set, the only networks the gateway forwards to: the desktop networks.
    # An agent's report names its desktops' addresses; with this, even a
    # compromised host cannot send users' tunnels elsewhere: ["10.20.0.0/22"].
    gateway_desktop_networks: Networks = []
    ticket_ttl_s: float = Field(60.0, gt=0, le=600)

    cookie_secure: bool = True
    session_idle_timeout_s: int = Field(30 * 60, ge=60)
    session_absolute_timeout_s: int = Field(10 * 3600, ge=300)
    enrolment_token_ttl_s: int = Field(10 * 60, ge=60, le=3600)

    totp_issuer: str = Field("VDI", min_length=1, max_length=64)
    argon2_memory_kib: int = Field(ARGON2_MIN_MEMORY_KIB, ge=ARGON2_MIN_MEMORY_KIB)
    argon2_time_cost: int = Field(ARGON2_MIN_TIME_COST, ge=ARGON2_MIN_TIME_COST)
    argon2_parallelism: int = Field(1, ge=1)
    argon2_threads: int = Field(0, ge=0, description="0: one per CPU core")

    lockout_threshold: int = Field(5, ge=1)
    lockout_base_delay_s: int = Field(30, ge=1)
    lockout_max_delay_s: int = Field(3600, ge=1)
    login_rate_limit: int = Field(30, ge=1, description="login attempts per source and window")
    login_rate_window_s: int = Field(60, ge=1)
    report_reject_limit: int = Field(
        30, ge=1, description="refused agent reports audited per source and window; then 429"
    )
    report_reject_window_s: int = Field(60, ge=1)

    report_interval: float = Field(10.0, gt=0, le=3600)
    host_down_after_missed: int = Field(3, ge=1)
    host_lost_grace_s: float = Field(300.0, ge=0)
    desktop_lost_grace_s: float = Field(
        300.0,
        ge=0,
        description="a desktop missing from its host's reports this long ends its sessions",
    )
    report_max_clock_skew_s: float = Field(300.0, gt=0)
    pending_timeout_s: float = Field(300.0, gt=0)
    schedule_grace_s: float = Field(3600.0, ge=0, description="after a telework window closes")
    spare_idle_stop_s: float = Field(900.0, ge=0, description="idle time before a spare stops")
    job_interval_s: float = Field(5.0, gt=0)
    sqlite_checkpoint_interval_s: float = Field(
        1.0, gt=0, description="SQLite: how often the log is copied back, off the request path"
    )
    jobs_enabled: bool = True

    # Desktops whose agent names no pool go to the pool of the first rule whose
    # regular expression matches the desktop name: {"^fin-" = "Finanzen"}.
    pool_rules: dict[str, str] = {}

    timezone: str = "Europe/Berlin"
    language: Literal["de", "en"] = "de"
    audit_retention_days: int = Field(365, ge=1)
    action_retention_days: int = Field(
        7, ge=1, description="finished power actions (start, stop, reset) are kept this long"
    )
    missing_desktop_retention_days: int = Field(
        7, ge=1, description="desktops gone from their host's reports are forgotten after this"
    )
    log_level: str = "INFO"

    load_index: LoadIndexSettings = LoadIndexSettings()
    ldap: LdapSettings = LdapSettings()

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _usable_database_url(cls, value: str | None) -> str | None:
        from broker.store.database_url import BadDatabaseUrl, normalise, tls_file_problem

        if value:
            # BadDatabaseUrl is a ValueError, and quotes no password.
            problem = tls_file_problem(normalise(value), os.environ)
            if problem:
                raise BadDatabaseUrl(problem)
        return value

    @field_validator("pool_rules")
    @classmethod
    def _valid_patterns(cls, value: dict[str, str]) -> dict[str, str]:
        import re

        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(
                    f"pool rule {pattern!r} is not a regular expression: {exc}"
                ) from exc
        return value

    @field_validator(*NETWORK_SETTINGS, mode="before")
    @classmethod
    def _network_list(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)  # a JSONDecodeError is a ValueError: a clear error
        return comma_separated(text)

    @field_validator(*NETWORK_SETTINGS)
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ValueError(f"{network!r} is not a network: {exc}") from exc
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file.get()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    # -- derived values ---------------------------------------------------

    @property
    def effective_database_url(self) -> str:
        """The SQLAlchemy URL, with the async driver filled in."""
        if not self.database_url:
            return f"sqlite+aiosqlite:///{self.data_dir / 'vdi-broker.sqlite3'}"
        from broker.store.database_url import normalise

        return normalise(self.database_url)

    @property
    def key_file(self) -> Path:
        return self.data_dir / "secret.key"

    @property
    def gateway_host_key_file(self) -> Path:
        return self.data_dir / "gateway_host_key"

    @property
    def effective_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls_cert_file else "http"
        return f"{scheme}://{self.http_host}:{self.http_port}"

    @property
    def effective_gateway_public_host(self) -> str:
        return self.gateway_public_host or self.gateway_host

    @property
    def effective_gateway_public_port(self) -> int:
        return self.gateway_public_port or self.gateway_port


# Settings whose value an error never shows: a database URL holds a password.
SECRET_SETTINGS = frozenset({"database_url"})


def describe_invalid(exc: ValidationError) -> str:
    """What is wrong with the settings, a line for each setting, with the value
    given unless it may hold a secret (pydantic's own text shows every value)."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        # A validator's ValueError reads "Value error, <its message>".
        said = error["msg"].removeprefix("Value error, ")
        line = f"  {'.'.join(str(part) for part in loc)}: {said}"
        if loc and loc[0] not in SECRET_SETTINGS:
            line += f" (given: {error['input']!r})"
        lines.append(line)
    return "\n".join(lines)


class ConfigFileError(ValueError):
    """The configuration file is missing or not a TOML file."""


class UnknownVariable(ValueError):
    """A VDI_* environment variable that names no setting."""


ENV_PREFIX = "VDI_"


def _variables(model: type[BaseModel], prefix: str) -> tuple[set[str], set[str]]:
    """The environment variables that set `model`'s fields, and the prefixes of
    those that set a key of a table (dict) field, upper case."""
    names: set[str] = set()
    tables: set[str] = set()
    for field_name, info in model.model_fields.items():
        name = prefix + field_name.upper()
        names.add(name)
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            inner, inner_tables = _variables(kind, name + "__")
            names |= inner
            tables |= inner_tables
        elif get_origin(kind) is dict:
            tables.add(name + "__")
    return names, tables


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A line for each VDI_* variable in `environ` that sets nothing, with the
    setting it was likely meant for. Unknown, it would be ignored without a word:
    `VDI_HTTP_PROT=8443` and the broker listens on 8000."""
    names, tables = _variables(Settings, ENV_PREFIX)
    lines = []
    for variable in sorted(environ):
        upper = variable.upper()
        if not upper.startswith(ENV_PREFIX) or upper in names:
            continue
        if any(upper.startswith(t) for t in tables):
            continue
        lines.append(f"{variable} is not a setting{did_you_mean(upper, names)}")
    return lines


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from keyword overrides, the environment and a TOML file."""
    unknown = unknown_variables(os.environ)
    if unknown:
        raise UnknownVariable("; ".join(unknown))
    if config_file is not None:
        _check_toml(config_file)
    token = _config_file.set(config_file)
    try:
        return Settings(**overrides)
    finally:
        _config_file.reset(token)


def _check_toml(path: Path) -> None:
    """A clear error for a config file that is not there or not TOML, before the
    settings source reads it and fails with a traceback."""
    if not path.exists():
        raise ConfigFileError(f"config file {path} does not exist")
    if not path.is_file():
        raise ConfigFileError(f"config file {path} is not a file")
    try:
        tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigFileError(f"config file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"config file {path} is not valid TOML: {exc}") from None
