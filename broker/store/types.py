"""Column types shared by the tables."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
# The largest integer both databases store: a larger id or count from outside is
# bad input, not a driver error.
MAX_INT = 2**63 - 1
# The largest id of an Integer primary key (an int4 on PostgreSQL): a larger one
# names no row, and asyncpg refuses to send it (SQLite's driver beyond MAX_INT).
MAX_ID = 2**31 - 1


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the database.

    SQLite has no time zones, so values are stored there as naive UTC and given
    their zone back on the way out. Naive datetimes are refused on the way in:
    they are a bug waiting to happen.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            raise ValueError("UTCDateTime needs a timezone-aware datetime")
        utc: dt.datetime = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return utc.replace(tzinfo=None)
        return utc

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class EncodedJSON(TypeDecorator[str]):
    """A JSON column written from text that is JSON already.

    Hot paths encode with pydantic (`model_dump_json`), several times faster than
    `json.dumps` over the dumped dict; this type hands that text to the driver as
    is instead of encoding it a second time. Only for binding values.
    """

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> None:
        return None
