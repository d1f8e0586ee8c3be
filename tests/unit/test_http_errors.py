"""Which database errors mean "down, retry" (503) and which stay a 500.

A connection lost in the middle of a statement arrives from SQLAlchemy's
asyncpg adapter as a plain DBAPIError whose cause chain holds the driver's
ConnectionDoesNotExistError; during a PostgreSQL outage that must be a 503
like any other, never a 500."""

from __future__ import annotations

import socket

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from broker.http_errors import install_error_handlers
from broker.store.db_errors import bad_value, database_down


class _AdapterError(Exception):
    """Stands in for the adapter's own error class, which wraps the driver's."""


def _adapted(driver: Exception) -> DBAPIError:
    """`driver`'s error as SQLAlchemy's asyncpg adapter passes it on."""
    try:
        try:
            raise driver
        except Exception as exc:
            raise _AdapterError(str(exc)) from exc
    except _AdapterError as adapted:
        return DBAPIError("SELECT 1", {}, adapted)


def _lost_mid_statement() -> DBAPIError:
    return _adapted(
        asyncpg.exceptions.ConnectionDoesNotExistError(
            "connection was closed in the middle of operation"
        )
    )


def test_classification() -> None:
    assert database_down(_lost_mid_statement())
    assert database_down(OperationalError("SELECT 1", {}, Exception("server closed")))
    assert database_down(ConnectionRefusedError())
    # The database's host name does not resolve (DNS down, or a typo).
    assert database_down(socket.gaierror(-3, "Temporary failure in name resolution"))
    assert not database_down(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not database_down(DBAPIError("SELECT 1", {}, _AdapterError("syntax error")))
    assert not database_down(ValueError("no"))


def _refused_value() -> DBAPIError:
    return _adapted(asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence: 0x00"))


def test_a_refused_value_is_bad_input_not_an_outage() -> None:
    from asyncpg.exceptions._base import DataError as ArgumentError

    # asyncpg's own check of an argument is an InterfaceError, which alone reads "down".
    too_big = InterfaceError("SELECT 1", {}, ArgumentError("value out of int32 range"))
    for exc in (_refused_value(), too_big):
        assert bad_value(exc) and not database_down(exc)
    assert not bad_value(_lost_mid_statement())


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/lost")
    async def lost() -> None:
        raise _lost_mid_statement()

    @app.get("/duplicate")
    async def duplicate() -> None:
        raise IntegrityError("INSERT", {}, Exception("duplicate key"))

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_a_connection_lost_mid_statement_is_a_503(client: httpx.AsyncClient) -> None:
    response = await client.get("/lost")
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    assert response.headers["retry-after"] == "5"


async def test_other_database_errors_stay_500(client: httpx.AsyncClient) -> None:
    assert (await client.get("/duplicate")).status_code == 500
