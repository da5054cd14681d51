"""Where an ingested event's time goes, step by step: this process's CPU and its Postgres backend's.

    .venv/bin/python -m infra.bench.ingest_steps [--batches 1200] [--per-transaction 2] [--window-age 84]

The same batches as `infra.bench.ingest` (100 events each) against a fresh database, with no HTTP
and nothing else running at once: the messages are parsed and validated and made drafts, then
stored `--per-transaction` requests to a transaction (what group commit gathers under load) on one
connection, one transaction after the other. Each step of the transaction is timed on both sides
of its connection: this process's CPU time and that of the Postgres backend serving it, both read
from the kernel's scheduler statistics (/proc/<pid>/schedstat, in nanoseconds). A step is one
function of services/ingest/service.py's `record_drafts`, and each of them is one round trip (a
server-side function's, migration 0015), except a merge's. The rest of the client's time is
`record_drafts`'s own Python (resolving identities, building the events, reducing the aggregates'
deltas) and the transaction's BEGIN and COMMIT (on the driver's connection, as group commit runs it).

Not measured here: HTTP (uvicorn, FastAPI: ~2 us an event in session 14), the outbox publisher, and
what two workers running at once cost each other.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import os
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.engine import make_url

from infra import migrate, stack
from infra.bench.ingest import BATCH, WINDOW_AGE_HELP, WINDOW_AGE_HOURS, _admin, _new_workspace, make_batches
from services.ingest import aggregates, payload, repository, service
from services.ingest.drafts import Draft, drafts_of
from shared.db import create_engine, create_sessionmaker, driver_connection, driver_transaction, session_scope
from shared.runtime import tune_gc
from shared.settings import Settings
from shared.workspaces import KeyKind, find_workspace_by_key

WARM_UP = 100  # batches stored before measuring
STEPS = [
    (repository, "lock_claim_and_find"),  # the transaction's first statement (its BEGIN is in the rest)
    (repository, "store_batch"),  # the events, the aggregates, the cart, the consents, the flags
    (repository, "apply_merges"),
    (aggregates, "recompute"),
]


class OnCpu:
    """How long a process's main thread has run on a CPU, in nanoseconds: the scheduler's own count,
    not the tick-sampled figure of /proc/<pid>/stat. The file stays open: a read is ~1 us, where
    opening it each time cost ~18 us, which the steps would have counted."""

    def __init__(self, pid: int) -> None:
        self._fd = os.open(f"/proc/{pid}/task/{pid}/schedstat", os.O_RDONLY)

    def __call__(self) -> int:
        return int(os.pread(self._fd, 64, 0).split()[0])

    def close(self) -> None:
        os.close(self._fd)


class GcClock:
    """The cyclic GC's CPU time, which lands in whichever step allocates when it runs."""

    def __init__(self) -> None:
        self.spent = 0
        self._started = 0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.thread_time_ns()
        else:
            self.spent += time.thread_time_ns() - self._started


class StepClock:
    """Adds up, per step, this process's CPU time and its Postgres backend's."""

    def __init__(self) -> None:
        self.client: Counter[str] = Counter()
        self.backend: Counter[str] = Counter()
        self.backend_on_cpu: OnCpu | None = None
        self._inside = False  # a step called by another (recompute's apply) counts in the caller only

    def wrap(self, name: str, step: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(step)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            if self._inside:
                return await step(*args, **kwargs)
            self._inside = True
            client, backend = time.thread_time_ns(), self.backend_now()
            try:
                return await step(*args, **kwargs)
            finally:
                self.client[name] += time.thread_time_ns() - client
                self.backend[name] += self.backend_now() - backend
                self._inside = False

        return timed

    def backend_now(self) -> int:
        assert self.backend_on_cpu is not None
        return self.backend_on_cpu()

    def clear(self) -> None:
        self.client.clear()
        self.backend.clear()


class DraftClock:
    """Makes requests' drafts as the app does, adding up the CPU time of parsing and of drafting."""

    def __init__(self, received_at: datetime) -> None:
        self.received_at = received_at
        self.parsing = self.drafting = 0

    def drafts(self, body: bytes) -> list[Draft]:
        started = time.thread_time_ns()
        parsed = payload.parse_batch(orjson.loads(body))
        parsed_at = time.thread_time_ns()
        made = drafts_of(
            parsed.messages,
            received_at=self.received_at,
            batch_sent_at=parsed.sent_at,
            batch_context=parsed.context,
        )
        self.parsing += parsed_at - started
        self.drafting += time.thread_time_ns() - parsed_at
        return made


async def measure(
    batch_count: int, per_transaction: int, window_age: float, database_url: str, redis_url: str
) -> None:
    settings = Settings(database_url=database_url, redis_url=redis_url, log_level="WARNING")
    write_key = await _new_workspace(settings, window_age)
    # one connection, so one backend serves every transaction (`create_engine` allows as many again)
    engine = create_engine(settings.model_copy(update={"db_pool_size": 1}))
    sessionmaker = create_sessionmaker(engine)
    try:
        async with session_scope(sessionmaker) as session:
            workspace = await find_workspace_by_key(session, write_key, KeyKind.write)
            assert workspace is not None
        received_at = datetime.now(UTC)
        batches = make_batches(WARM_UP + batch_count)
        tune_gc()  # as every service process does
        drafter, clock, gc_clock = DraftClock(received_at), StepClock(), GcClock()
        async with session_scope(sessionmaker) as session:  # the pool's one connection, used throughout
            clock.backend_on_cpu = OnCpu((await driver_connection(session)).get_server_pid())
        for module, name in STEPS:
            setattr(module, name, clock.wrap(name, getattr(module, name)))

        async def store(requests: list[list[Draft]]) -> None:
            started = time.thread_time_ns(), clock.backend_now()
            async with driver_transaction(sessionmaker) as connection:  # as group commit does
                await service.record_drafts(
                    connection, workspace.id, requests, timezone=workspace.timezone, received_at=received_at
                )
            clock.client["transaction"] += time.thread_time_ns() - started[0]
            clock.backend["transaction"] += clock.backend_now() - started[1]

        for start in range(0, len(batches), per_transaction):
            if start == WARM_UP:
                drafter = DraftClock(received_at)
                clock.clear()
                gc_clock.spent = 0
            await store([drafter.drafts(body) for body in batches[start : start + per_transaction]])
        events = batch_count * BATCH
        _report(clock, events, drafter.parsing / events, drafter.drafting / events)
        print(f"of the client's total, the cyclic GC: {gc_clock.spent / events / 1000:.1f} us an event")
        clock.backend_on_cpu.close()
    finally:
        await engine.dispose()


def _report(clock: StepClock, events: int, parsing_ns: float, drafting_ns: float) -> None:
    def us(ns: float) -> str:
        return f"{ns / 1000:6.1f}"

    print(f"{'step':<34} {'client us':>9} {'Postgres us':>11}   (an event, {events:,} events)")
    print(f"{'parse and validate (orjson, msgspec)':<34} {us(parsing_ns):>9} {'':>11}")
    print(f"{'drafts (ids, times, contexts)':<34} {us(drafting_ns):>9} {'':>11}")
    for _, name in STEPS:
        print(f"{name:<34} {us(clock.client[name] / events):>9} {us(clock.backend[name] / events):>11}")
    steps_client = sum(clock.client[name] for _, name in STEPS)
    steps_backend = sum(clock.backend[name] for _, name in STEPS)
    rest_client = clock.client["transaction"] - steps_client
    rest_backend = clock.backend["transaction"] - steps_backend
    rest = "record_drafts Python, BEGIN, COMMIT"
    print(f"{rest:<34} {us(rest_client / events):>9} {us(rest_backend / events):>11}")
    total_client = clock.client["transaction"] / events + parsing_ns + drafting_ns
    print(f"{'total':<34} {us(total_client):>9} {us(clock.backend['transaction'] / events):>11}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=1200)
    parser.add_argument("--per-transaction", type=int, default=2)
    parser.add_argument("--window-age", type=float, default=WINDOW_AGE_HOURS, help=WINDOW_AGE_HELP)
    args = parser.parse_args()
    base = Settings()
    if not base.database_url:
        base = base.model_copy(update={"state_dir": base.state_dir / "bench"})
    with stack.servers_for_command(base) as ready:
        asyncio.run(_in_fresh_database(args, ready.require_database_url(), ready.require_redis_url()))


async def _in_fresh_database(args: argparse.Namespace, server_url: str, redis_url: str) -> None:
    name = f"dasi_bench_steps_{uuid.uuid4().hex[:8]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    try:
        database_url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
        await asyncio.to_thread(migrate.upgrade, database_url)
        await measure(args.batches, args.per_transaction, args.window_age, database_url, redis_url)
    finally:
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
