"""The database URL as people write it, made into one SQLAlchemy's async drivers
take, and a clear word on one that cannot work.

A URL holds the database password, so no message here quotes it.
"""

from __future__ import annotations

import inspect
import ssl
from collections.abc import Mapping

import asyncpg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

SQLITE = "sqlite+aiosqlite"
POSTGRESQL = "postgresql+asyncpg"
_ASYNC_SCHEMES = (
    ("postgresql://", f"{POSTGRESQL}://"),
    ("postgres://", f"{POSTGRESQL}://"),
    ("sqlite://", f"{SQLITE}://"),
)
SHAPE = "postgresql://USER:PASSWORD@HOST:PORT/DATABASE or sqlite:///PATH"

# What a PostgreSQL URL's query may set: SQLAlchemy hands it to asyncpg.connect()
# as keyword arguments (the address, user and database come from the URL itself),
# and keeps one for itself. Anything else fails at the first connection.
_ASYNCPG_QUERY = (
    set(inspect.signature(asyncpg.connect).parameters)
    - {"dsn", "host", "port", "user", "password", "database", "loop"}
    - {"connection_class", "record_class"}
) | {"prepared_statement_cache_size"}
# asyncpg's `ssl` takes libpq's modes (disable ... verify-full), and reads the CA
# file from PGSSLROOTCERT as libpq does; libpq's name for it is what people write.
_LIBPQ_SSLMODE = "sslmode"
# The modes in which asyncpg reads the CA file (and revocation list) that libpq's
# variables name, and those variables. A file it cannot read ends the first
# connection in a traceback that does not name the file.
_VERIFYING_MODES = ("require", "verify-ca", "verify-full")
_CA_FILE_VARIABLES = ("PGSSLROOTCERT", "PGSSLCRL")


class BadDatabaseUrl(ValueError):
    """A database URL the broker cannot use; the message does not quote it."""


def normalise(url: str) -> str:
    """The URL with the async driver filled in (postgresql:// becomes
    postgresql+asyncpg://) and libpq's `sslmode` as asyncpg's `ssl`.
    Raises BadDatabaseUrl for a URL that could not connect."""
    for plain, async_url in _ASYNC_SCHEMES:
        if url.startswith(plain):
            url = async_url + url[len(plain) :]
            break
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise BadDatabaseUrl(f"it is not a URL; write it as {SHAPE}") from None
    except ValueError:
        # The one part make_url converts: "host:port" with a port not a number.
        raise BadDatabaseUrl("its port is not a number") from None
    if parsed.drivername not in (SQLITE, POSTGRESQL):
        raise BadDatabaseUrl(
            f"the broker does not use {parsed.drivername!r} databases; write it as {SHAPE}"
        )
    if parsed.drivername == POSTGRESQL and parsed.query:
        return _asyncpg_query(parsed).render_as_string(hide_password=False)
    return url


def _asyncpg_query(url: URL) -> URL:
    query = dict(url.query)
    if _LIBPQ_SSLMODE in query:
        if "ssl" in query:
            raise BadDatabaseUrl("it gives both sslmode and ssl; give one")
        query["ssl"] = query.pop(_LIBPQ_SSLMODE)
    unknown = sorted(set(query) - _ASYNCPG_QUERY)
    if unknown:
        raise BadDatabaseUrl(
            f"PostgreSQL does not take {', '.join(unknown)} here; for TLS write "
            "?sslmode=verify-full and give the CA file in PGSSLROOTCERT"
        )
    return url.set(query=query)


def tls_file_problem(url: str, environ: Mapping[str, str]) -> str | None:
    """What keeps the CA file of a PostgreSQL URL's TLS mode from being read (it
    is named by PGSSLROOTCERT or PGSSLCRL in `environ`, as for psql), else None.
    `url` is normalised; the message does not quote it."""
    parsed = make_url(url)
    if parsed.drivername != POSTGRESQL:
        return None
    mode = parsed.query.get("ssl", environ.get("PGSSLMODE"))
    if mode not in _VERIFYING_MODES:
        return None
    for name in _CA_FILE_VARIABLES:
        path = environ.get(name)
        if not path:
            continue
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
        except ssl.SSLError:  # an OSError too: first
            return f"{name}={path} holds no PEM certificate"
        except OSError as exc:
            return f"{name}={path} cannot be read: {exc.strerror or exc}"
    return None
