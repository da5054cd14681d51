"""`driver_connection`: the asyncpg connection inside the session's transaction, found once per
transaction."""

from __future__ import annotations

from sqlalchemy import text

from shared.db import driver_connection


async def test_the_raw_connection_is_inside_the_transaction_and_kept_for_it(db):
    async with db() as session:
        raw = await driver_connection(session)
        assert raw.is_in_transaction()  # begun, though nothing ran on the session yet
        await raw.execute("CREATE TEMP TABLE kept (n int)")
        assert await driver_connection(session) is raw
        await session.execute(text("INSERT INTO kept VALUES (1)"))  # the same transaction
        assert await raw.fetchval("SELECT count(*) FROM kept") == 1
        await session.rollback()

        again = await driver_connection(session)  # a new transaction: looked up and begun again
        assert again.is_in_transaction()
        assert await again.fetchval("SELECT to_regclass('pg_temp.kept') IS NULL")  # rolled back
        await session.rollback()
