"""Alembic environment: one tree for every service's tables. Run it through `dasi migrate`."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import services
import shared.workspaces  # noqa: F401  (platform tables)
from shared.db import ALL_SCHEMAS, PLATFORM_SCHEMA, Base, async_database_url

# every service's models.py registers its tables on the shared metadata
for module in pkgutil.iter_modules(services.__path__):
    if importlib.util.find_spec(f"services.{module.name}.models"):
        importlib.import_module(f"services.{module.name}.models")

config = context.config
target_metadata = Base.metadata


def _include_name(name: str | None, type_: str, parent_names: object) -> bool:
    return name in ALL_SCHEMAS if type_ == "schema" else True


def _run(connection: Connection) -> None:
    connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {PLATFORM_SCHEMA}"))
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_schemas=True,
        include_name=_include_name,
        version_table_schema=PLATFORM_SCHEMA,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_async_engine(async_database_url(config.attributes["database_url"]))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `dasi migrate`")
asyncio.run(_run_online())
