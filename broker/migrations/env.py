"""Alembic environment. The broker passes its own connection (broker.store.migrate)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from broker.store.tables import Base

target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `vdi-broker db upgrade`, which supplies the connection")
_configure(connection)
