"""Databases of our own on the local PostgreSQL server (127.0.0.1:5432, trust auth)."""

from __future__ import annotations

import secrets

import asyncpg

SERVER = "postgresql://postgres@127.0.0.1:5432"


async def create_database(prefix: str = "vdi_test") -> str:
    """Create a fresh, uniquely named database and return its name."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(f"{SERVER}/postgres")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(f"{SERVER}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def url(name: str) -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
