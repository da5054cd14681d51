"""`driver_connection`: the asyncpg connection inside the session's transaction, found once per
transaction. `driver_transaction`: a transaction straight on a pooled asyncpg connection."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text

from shared.db import driver_connection, driver_transaction, session_scope


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


async def test_a_driver_transaction_commits_when_its_block_ends_and_rolls_back_when_it_raises(db):
    async with session_scope(db) as session:
        await session.execute(text("CREATE TABLE driver_kept (n int)"))
    async with driver_transaction(db) as connection:
        assert connection.is_in_transaction()
        await connection.execute("INSERT INTO driver_kept VALUES (1)")
    with pytest.raises(RuntimeError):
        async with driver_transaction(db) as connection:
            await connection.execute("INSERT INTO driver_kept VALUES (2)")
            raise RuntimeError("the block failed")
    async with session_scope(db) as session:
        assert (await session.execute(text("SELECT array_agg(n) FROM driver_kept"))).scalar() == [1]


async def test_a_connection_closed_under_a_driver_transaction_is_not_handed_out_again(db):
    closed = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)
    with pytest.raises(closed):  # whichever the driver says first
        async with driver_transaction(db) as connection:
            doomed = connection.get_server_pid()
            async with session_scope(db) as session:  # another connection of the pool ends it
                await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": doomed})
            await connection.execute("SELECT 1")
    async with driver_transaction(db) as connection:  # the pool hands out the one used last, if kept
        assert connection.get_server_pid() != doomed
        assert await connection.fetchval("SELECT 1") == 1
