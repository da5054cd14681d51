"""What one call to Postgres costs the client's CPU, by how it is made: the figures behind ingest's
choice of a transaction straight on asyncpg (`shared.db.driver_transaction`) and of the claim's
messageIds as one JSON text (services/ingest/repository.py).

    .venv/bin/python -m infra.bench.driver_calls [--calls 2000] [--rounds 3]

Each way runs `--calls` times in a row on one connection (after a warm-up), and prints this
process's CPU time a call (`time.process_time`), and for the claims the call's wall time too (the
client's and Postgres's work, one after the other). Servers as every bench: the embedded default
under .dasi/bench, or DASI_DATABASE_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable

import orjson
from sqlalchemy import text

from infra import stack
from shared.db import create_engine, create_sessionmaker, driver_transaction, session_scope
from shared.settings import Settings

WARM_UP = 100
CLAIMS = 300  # messageIds in a transaction of ~3 requests


async def _timed(name: str, call: Callable[[], Awaitable[object]], calls: int) -> None:
    for _ in range(WARM_UP):
        await call()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        await call()
    cpu_us = 1e6 * (time.process_time() - cpu) / calls
    wall_us = 1e6 * (time.perf_counter() - wall) / calls
    print(f"  {name:<44} client CPU {cpu_us:7.1f} us   wall {wall_us:7.1f} us a call")


async def measure(database_url: str, calls: int, rounds: int) -> None:
    engine = create_engine(Settings(database_url=database_url, log_level="WARNING", db_pool_size=1))
    sessionmaker = create_sessionmaker(engine)
    ids = [uuid.uuid4().hex for _ in range(CLAIMS)]
    made = [time.time() - random.random() if random.random() < 0.9 else None for _ in range(CLAIMS)]

    async def session_transaction() -> None:
        async with session_scope(sessionmaker) as session:
            await session.execute(text("SELECT 1"))

    async def driver_tx() -> None:
        async with driver_transaction(sessionmaker) as connection:
            await connection.execute("SELECT 1")

    try:
        async with driver_transaction(sessionmaker) as connection:
            arrays = await connection.prepare(
                "SELECT count(*) FROM unnest($1::text[], $2::float8[]) AS m(message_id, made_at)"
            )
            pairs = await connection.prepare(
                "SELECT count(*) FROM (SELECT c->>0, (c->>1)::float8"
                " FROM json_array_elements($1::json) AS c) AS m"
            )
        for round_ in range(1, rounds + 1):
            print(f"round {round_}")
            await _timed("a session's transaction, one statement", session_transaction, calls)
            await _timed("driver_transaction, one statement", driver_tx, calls)
            async with driver_transaction(sessionmaker) as connection:
                await _timed("one prepared statement", lambda: connection.fetchval("SELECT 1"), calls)
                await _timed(
                    f"{CLAIMS} claims as text[] and float8[]", lambda: arrays.fetchval(ids, made), calls
                )
                await _timed(
                    f"{CLAIMS} claims as one JSON text",
                    lambda: pairs.fetchval(orjson.dumps(list(zip(ids, made, strict=True))).decode()),
                    calls,
                )
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = Settings()
    if not base.database_url:
        base = base.model_copy(update={"state_dir": base.state_dir / "bench"})
    with stack.servers_for_command(base) as ready:
        asyncio.run(measure(ready.require_database_url(), args.calls, args.rounds))


if __name__ == "__main__":
    main()
