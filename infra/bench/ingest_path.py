"""Ingest request path alone: CPU time per event in ONE process, no HTTP server, no load generator.

    .venv/bin/python -m infra.bench.ingest_path [--batches 600] [--in-flight 4]

The ingest app runs under httpx's ASGI transport in this process, 4 requests in flight, with the
same batches as `infra.bench.ingest` (100 events each) against a fresh database. It prints the
process's CPU time per event (parsing, validation, the statements' client side) and, apart, that of
the Postgres backends serving it. Steadier than the end-to-end rates on a shared machine: use
it to compare two versions of the request path, alternating runs. `--in-flight 1` stores each
request in a transaction of its own (what a store sending at a moderate rate gets), where a
transaction's fixed cost (its round trips) shows most. Profile it with
`py-spy record -f raw -- .venv/bin/python -m infra.bench.ingest_path`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
import uuid

import httpx
from sqlalchemy.engine import make_url

from infra import migrate, stack
from infra.bench.ingest import BATCH, _admin, _new_workspace, database_backends, make_batches
from infra.bench.measure import cpu_by_pid, cpu_used
from services.ingest.main import create_app
from shared.settings import Settings

WARM_UP = 100  # batches sent before measuring
IN_FLIGHT = 4


async def _send_all(client: httpx.AsyncClient, batches: list[bytes], in_flight: int) -> None:
    queue = list(batches)

    async def sender() -> None:
        while queue:
            response = await client.post("/v1/batch", content=queue.pop())
            response.raise_for_status()

    await asyncio.gather(*(sender() for _ in range(in_flight)))


async def measure(batch_count: int, in_flight: int, server_url: str, redis_url: str) -> None:
    name = f"dasi_bench_path_{uuid.uuid4().hex[:8]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    try:
        database_url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
        await asyncio.to_thread(migrate.upgrade, database_url)
        settings = Settings(database_url=database_url, redis_url=redis_url, log_level="WARNING")
        write_key = await _new_workspace(settings)
        batches = make_batches(WARM_UP + batch_count)
        headers = {
            "Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode(),
            "Content-Type": "application/json",
        }
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            client = httpx.AsyncClient(transport=transport, base_url="http://ingest", headers=headers)
            async with client:
                await _send_all(client, batches[:WARM_UP], in_flight)
                backends = cpu_by_pid(await database_backends(database_url))
                cpu, wall = time.process_time(), time.perf_counter()
                await _send_all(client, batches[WARM_UP:], in_flight)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                postgres = cpu_used(backends, cpu_by_pid(await database_backends(database_url)))
        events = batch_count * BATCH
        print(
            f"request path, one process: {cpu / events * 1e6:,.0f} us CPU per event, "
            f"Postgres backends {postgres / events * 1e6:,.0f} us "
            f"({events:,} events in {wall:.1f} s, {events / wall:,.0f} events/s with {in_flight} in flight)"
        )
    finally:
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=600)
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT)
    args = parser.parse_args()
    base = Settings()
    if not base.database_url:
        base = base.model_copy(update={"state_dir": base.state_dir / "bench"})
    with stack.servers_for_command(base) as ready:
        asyncio.run(
            measure(args.batches, args.in_flight, ready.require_database_url(), ready.require_redis_url())
        )


if __name__ == "__main__":
    main()
