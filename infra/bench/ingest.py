"""Ingest benchmark: realistic batches through POST /v1/batch, end to end, with the aggregates kept.

    .venv/bin/python -m infra.bench.ingest [--seconds 20] [--workers 2] [--concurrency 16] [--rate 30000]
                                           [--window-age 84] [--open-rate R] [--no-vacuum] [--timeline]

It starts its own servers (the embedded default, or DASI_DATABASE_URL / DASI_REDIS_URL), a fresh
database, the ingest app under uvicorn and the ingest worker (the outbox publisher) in separate
processes; the load generator runs here.
It prints, measured in this same run:

1. COPY baseline: the same event rows COPYed into a bare table (what Postgres alone can take);
2. closed loop: `--concurrency` requests in flight, batches of 100, as fast as ingest answers;
3. open loop: batches sent at `--rate` events/s (or 70% of the closed-loop rate if lower; exactly
   `--open-rate` if given), with latency; `--timeline` adds the slowest batch of each second, and
   when autovacuum and checkpoints ran (in session 11 some slow seconds matched autovacuum's runs
   on the freshly filled tables, others nothing in Postgres: this machine's own noise).
   Before it, a VACUUM ANALYZE of what the closed loop wrote (`--no-vacuum`: none). Left to
   autovacuum, the open loop paid for the closed loop's rows (and the seeded ones) all at once;
   a deployment's autovacuum keeps pace with its traffic, as it does with the open loop's own rows.

Events: 100,000 shoppers; a batch carries the activity of `--shoppers-per-batch` of them (an SDK in
a browser or app batches one shopper's events; a store's server mixes several). Per 100 events:
~60 page views, 15 product views, 10 cart adds, 3 cart removes, 3 orders, 4 identifies, 2 sign-ins,
3 custom. ~5% of batches are an SDK's resend of a batch it sent seconds before (every messageId a
repeat); each loop's batches are made apart, so a resend's original was sent in the same loop.
The store's dedupe window holds 500,000 messageIds of a previous generation, as a deployed one does,
and its current generation is `--window-age` hours old (default 84, half the default window).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
from arq.connections import ArqRedis
from sqlalchemy import text
from sqlalchemy.engine import make_url

from infra import migrate, stack
from infra.bench.measure import children, cpu_by_pid, cpu_used, machine_busy_seconds
from shared.db import create_engine, create_sessionmaker, session_scope
from shared.settings import PROJECT_ROOT, Settings
from shared.streams import ensure_group
from shared.workspaces import create_workspace

BATCH = 100
SHOPPERS = 100_000
PORT = 18001
PRODUCTS = [
    (f"P{i:04d}", name, price)
    for i, (name, price) in enumerate(
        [("수분크림", 28000), ("선크림", 15000), ("토너", 18000), ("립밤", 9000), ("클렌징폼", 12000)] * 40
    )
]
PAGES = ["/", "/sale", "/best", "/new", "/event/black-friday", "/cart", "/mypage"]


def _message(rng: random.Random, now: datetime, user: str) -> dict[str, Any]:
    when = (now - timedelta(seconds=rng.randrange(3600))).isoformat()
    product_id, name, price = rng.choice(PRODUCTS)
    roll = rng.random()
    base = {
        "userId": user,
        "timestamp": when,
        "messageId": uuid.uuid4().hex,
        "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
    }
    if roll < 0.60:
        path = rng.choice(PAGES)
        return {
            **base,
            "type": "page",
            "name": path,
            "properties": {"url": f"https://dasi.shop{path}", "path": path},
        }
    if roll < 0.75:
        return {
            **base,
            "type": "track",
            "event": "Product Viewed",
            "properties": {"product_id": product_id, "name": name, "price": price, "category": "스킨케어"},
        }
    if roll < 0.85:
        return {
            **base,
            "type": "track",
            "event": "Product Added",
            "properties": {"product_id": product_id, "name": name, "price": price, "quantity": 1},
        }
    if roll < 0.88:
        return {**base, "type": "track", "event": "Product Removed", "properties": {"product_id": product_id}}
    if roll < 0.91:
        return {
            **base,
            "type": "track",
            "event": "Order Completed",
            "properties": {
                "order_id": uuid.uuid4().hex[:12],
                "total": price * 2,
                "revenue": price * 2,
                "products": [{"product_id": product_id, "price": price, "quantity": 2}],
            },
        }
    if roll < 0.95:
        return {
            **base,
            "type": "identify",
            "traits": {"name": "김민지", "phone": "01012345678", "consents": {"sms": True, "kakao": True}},
        }
    if roll < 0.97:
        return {**base, "type": "track", "event": "Signed In", "properties": {}}
    return {**base, "type": "track", "event": "Coupon Viewed", "properties": {"coupon": "WELCOME10"}}


# An SDK resends a whole batch when its answer was lost (a timeout, a 5xx): analytics-python and
# RudderStack's SDK retry the request as it was. ~5% of batches are such resends, of a batch sent a
# few seconds before (100-1,000 batches back), whose transaction has long committed. (Until session
# 15, 5% of every batch's messages were drawn from the first 50,000 ever sent: every batch named a
# few of the same 2,500 shoppers, and the two workers' transactions waited for each other's locks
# on them.)
RESEND_SHARE = 0.05
RESEND_BACK = (100, 1_000)


def make_batches(count: int, shoppers_per_batch: int = 5, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    batches: list[bytes] = []
    for index in range(count):
        if index >= RESEND_BACK[0] and rng.random() < RESEND_SHARE:
            batches.append(batches[index - rng.randint(RESEND_BACK[0], min(RESEND_BACK[1], index))])
            continue
        shoppers = [f"member-{rng.randrange(SHOPPERS)}" for _ in range(shoppers_per_batch)]
        batch = [_message(rng, now, rng.choice(shoppers)) for _ in range(BATCH)]
        batches.append(json.dumps({"batch": batch, "sentAt": now.isoformat()}).encode())
    return batches


# --- servers and database ------------------------------------------------------------------------


async def _connect(url: str, database: str | None = None) -> asyncpg.Connection:
    parsed = make_url(url)
    return await asyncpg.connect(
        host=parsed.query.get("host") or parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        database=database or parsed.database,
    )


async def vacuum(database_url: str) -> float:
    """VACUUM ANALYZE the bench's database; returns the seconds it took."""
    conn = await _connect(database_url)
    try:
        started = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        return time.perf_counter() - started
    finally:
        await conn.close()


async def _admin(url: str, sql: str) -> None:
    conn = await _connect(url, "postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


# A deployed store's dedupe window always holds a previous generation of messageIds, which batches
# look their ids up in (services/ingest/dedupe.py); a fresh database has none. Its current
# generation is, on average, half a window old (the default window is 168 hours): from
# `dedupe.PROBE_MARGIN` after it started, messages made since are no longer looked up.
PREVIOUS_GENERATION_IDS = 500_000
WINDOW_AGE_HOURS = 84.0
WINDOW_AGE_HELP = "hours since the dedupe window's current generation started (0: just rotated)"
_SEED_PREVIOUS_GENERATION = text("""
    INSERT INTO ingest.received_messages (workspace_id, message_id, generation)
    SELECT :workspace_id, md5(i::text), (SELECT (generation + 2) % 3 FROM ingest.dedupe_window)
    FROM generate_series(1, :count) AS i
""")


_AGE_CURRENT_GENERATION = text(
    "UPDATE ingest.dedupe_window SET started_at = now() - make_interval(secs => :hours * 3600)"
)


async def _new_workspace(settings: Settings, window_age_hours: float = WINDOW_AGE_HOURS) -> str:
    """A store with the previous generation of its dedupe window filled, and its current generation
    `window_age_hours` old; returns its write key."""
    engine = create_engine(settings)
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            created = await create_workspace(session, "벤치마크 스토어")
            await session.execute(
                _SEED_PREVIOUS_GENERATION,
                {"workspace_id": created.workspace.id, "count": PREVIOUS_GENERATION_IDS},
            )
            await session.execute(_AGE_CURRENT_GENERATION, {"hours": window_age_hours})
        return created.write_key
    finally:
        await engine.dispose()


def _start_ingest(settings: Settings, workers: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DASI_DATABASE_URL": settings.database_url or "",
        "DASI_REDIS_URL": settings.redis_url or "",
        "DASI_EVENTS_STREAM": settings.events_stream,
        "DASI_LOG_LEVEL": "WARNING",
        "DASI_DB_POOL_SIZE": "8",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "services.ingest.main:create_app",
            "--port",
            str(PORT),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=PROJECT_ROOT,
        env=env,
    )


def _start_ingest_worker(settings: Settings) -> subprocess.Popen[bytes]:
    """The ingest worker: it publishes the outbox to the events stream, so its CPU counts too."""
    env = {
        **os.environ,
        "DASI_DATABASE_URL": settings.database_url or "",
        "DASI_REDIS_URL": settings.redis_url or "",
        "DASI_EVENTS_STREAM": settings.events_stream,
        "DASI_LOG_LEVEL": "WARNING",
    }
    log = settings.state_dir / "bench-ingest-worker.log"  # arq logs every job; keep them off the report
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "arq", "services.ingest.worker.WorkerSettings"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _wait_ready(session: aiohttp.ClientSession) -> None:
    for _ in range(200):
        try:
            async with session.get(f"http://127.0.0.1:{PORT}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("ingest did not become ready")


# --- measurements --------------------------------------------------------------------------------


async def copy_baseline(database_url: str, batches: list[bytes]) -> float:
    """Events/s for COPYing the same rows into a bare events-shaped table with one index."""
    conn = await _connect(database_url)
    try:
        await conn.execute("""
            CREATE TEMP TABLE bare_events (id uuid, workspace_id uuid, message_id text, type text, name text,
                properties jsonb, context jsonb, occurred_at timestamptz, received_at timestamptz);
            CREATE INDEX ON bare_events (workspace_id, occurred_at)""")
        workspace = uuid.uuid4()
        now = datetime.now(UTC)
        rows = [
            (
                uuid.uuid4(),
                workspace,
                m["messageId"],
                m["type"],
                m.get("event") or m.get("name"),
                json.dumps(m.get("properties") or m.get("traits") or {}),
                json.dumps(m["context"]),
                datetime.fromisoformat(m["timestamp"]),
                now,
            )
            for body in batches
            for m in json.loads(body)["batch"]
        ]
        started = time.perf_counter()
        await conn.copy_records_to_table("bare_events", records=rows)
        return len(rows) / (time.perf_counter() - started)
    finally:
        await conn.close()


async def closed_loop(
    http: aiohttp.ClientSession,
    batches: list[bytes],
    seconds: float,
    concurrency: int,
    headers: dict[str, str],
) -> tuple[float, list[float], int]:
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    errors = 0
    index = 0

    async def worker() -> None:
        nonlocal index, errors
        while time.perf_counter() < deadline and index < len(batches):
            body = batches[index]
            index += 1
            started = time.perf_counter()
            async with http.post(f"http://127.0.0.1:{PORT}/v1/batch", data=body, headers=headers) as response:
                await response.read()
                errors += response.status != 200
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return len(latencies) * BATCH / elapsed, latencies, errors


@dataclass
class Timeline:
    started_at: datetime  # wall clock, to read beside the servers' logs
    batches: list[tuple[float, float]] = field(default_factory=list)  # (seconds in when sent, latency)


async def open_loop(
    http: aiohttp.ClientSession, batches: list[bytes], seconds: float, rate: float, headers: dict[str, str]
) -> tuple[float, list[float], int, Timeline]:
    """Send a batch every BATCH/rate seconds regardless of answers; latency includes queueing.
    Also returns each batch's (seconds into the loop when sent, latency) and when the loop started."""
    interval = BATCH / rate
    count = min(len(batches), int(seconds / interval))
    latencies: list[float] = []
    timeline = Timeline(datetime.now(UTC))
    errors = 0
    started = time.perf_counter()

    async def send(body: bytes) -> None:
        nonlocal errors
        sent = time.perf_counter()
        async with http.post(f"http://127.0.0.1:{PORT}/v1/batch", data=body, headers=headers) as response:
            await response.read()
            errors += response.status != 200
        latencies.append(time.perf_counter() - sent)
        timeline.batches.append((sent - started, latencies[-1]))

    tasks = []
    for i in range(count):
        delay = started + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(batches[i])))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    return count * BATCH / elapsed, latencies, errors, timeline


async def background_runs(database_url: str, stop: asyncio.Event) -> dict[str, tuple[float, float]]:
    """Until `stop`: what ran beside the requests, from when to when (seconds from the start), read
    off pg_stat_activity every 100 ms: autovacuum (by table) and checkpoints (the checkpointer is
    anywhere but its idle wait; a checkpoint by WAL volume spreads its writes over ~90% of the next
    one's WAL, and every page first changed after it starts goes to the WAL whole)."""
    conn = await _connect(database_url)
    runs: dict[str, tuple[float, float]] = {}
    checkpoints = 0
    started = time.perf_counter()

    def seen(label: str, at: float) -> None:
        runs[label] = (runs.get(label, (at, at))[0], at)

    try:
        while not stop.is_set():
            at = time.perf_counter() - started
            for backend_type, query, wait_event in await conn.fetch(
                "SELECT backend_type, query, wait_event FROM pg_stat_activity "
                "WHERE backend_type IN ('autovacuum worker', 'checkpointer')"
            ):
                if backend_type == "autovacuum worker":
                    seen("autovacuum " + query.removeprefix("autovacuum: ").split(" (")[0], at)
                elif wait_event != "CheckpointerMain":
                    last = runs.get(f"checkpoint {checkpoints}")
                    checkpoints += last is None or at - last[1] > 1.0
                    seen(f"checkpoint {checkpoints}", at)
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    return runs


def _report_timeline(timeline: Timeline, background: dict[str, tuple[float, float]]) -> None:
    """The slowest batch sent in each second, beside what ran in the background meanwhile."""
    slowest: dict[int, float] = {}
    for sent, latency in timeline.batches:
        slowest[int(sent)] = max(slowest.get(int(sent), 0.0), latency)
    seconds = " ".join(f"{second}s {latency * 1000:.0f}" for second, latency in sorted(slowest.items()))
    print(f"  slowest batch per second (ms) from {timeline.started_at:%H:%M:%S} UTC: {seconds}")
    for label, (first, last) in sorted(background.items(), key=lambda item: item[1]):
        print(f"  {first:5.1f}-{last:5.1f} s  {label}")


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else float("nan")


def _report(label: str, rate: float, latencies: list[float], errors: int) -> None:
    print(
        f"{label:<34} {rate:>9,.0f} events/s   p50 {_percentile(latencies, 50):6.1f} ms   "
        f"p99 {_percentile(latencies, 99):6.1f} ms   batches {len(latencies):>5}   non-200 {errors}"
    )


async def database_backends(database_url: str) -> list[int]:
    """The Postgres backends connected to the bench's database (their process ids)."""
    conn = await _connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return [row[0] for row in rows]
    finally:
        await conn.close()


async def committed(database_url: str) -> int:
    """Transactions committed in the bench's database so far (backends report them within ~1 s)."""
    conn = await _connect(database_url)
    try:
        count: int = await conn.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return count
    finally:
        await conn.close()


async def _measured_processes(database_url: str, app_pid: int, publisher_pid: int) -> dict[str, list[int]]:
    """The processes whose CPU the closed loop is charged: the uvicorn workers, the publisher, the
    Postgres backends connected to the bench's database, and this process (the load generator: a
    store's traffic would come from elsewhere)."""
    return {
        "uvicorn workers": [app_pid, *children(app_pid)],
        "publisher": [publisher_pid],
        "postgres backends": await database_backends(database_url),
        "load generator": [os.getpid()],
    }


def _cpu_by_pid(measured: dict[str, list[int]]) -> dict[str, dict[int, float]]:
    return {name: cpu_by_pid(pids) for name, pids in measured.items()}


def _report_cpu(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]], machine: float, events: int
) -> None:
    """CPU per event of each group, from the processes alive at the end (a Postgres backend opened
    during the loop counts in full), and of the whole machine (the load generator, Redis, the kernel)."""
    parts = []
    for name, cpu in after.items():
        used = cpu_used(before[name], cpu)
        parts.append(f"{name} {used / events * 1e6:,.0f} us")
    parts.append(f"whole machine {machine / events * 1e6:,.0f} us")
    print(f"{'  CPU per event':<34} " + ", ".join(parts))


def _report_transactions(commits: int, requests: int) -> None:
    """How many requests a transaction took on average (the publisher's few transactions count too):
    a transaction's fixed cost is spread over them (services/ingest/group_commit.py)."""
    print(f"{'  transactions':<34} {commits:,} committed, {requests / max(commits, 1):.1f} requests each")


def run(args: argparse.Namespace) -> None:
    # embedded servers of its own (under .dasi/bench), so a test run ending elsewhere cannot stop them
    base = Settings()
    if not base.database_url:
        base = base.model_copy(update={"state_dir": base.state_dir / "bench"})
    with stack.servers_for_command(base) as ready:  # stops embedded servers only if it started them
        asyncio.run(measure(args, ready.require_database_url(), ready.require_redis_url()))


@contextlib.asynccontextmanager
async def stream_kept_up(redis_url: str, stream: str) -> AsyncIterator[None]:
    """The events stream as a deployment has it: fresh, with a consumer group that keeps up (as the
    segmenter's does), so the ingest worker trims it as it goes. Without a group nothing is trimmed
    for DASI_EVENTS_STREAM_KEEP_HOURS: the bench's Valkey held every run's events (700 MB after a
    morning of runs), and its append-only-file rewrites wrote them all again, bursts of disk writes
    in the middle of the measurements. Each run now starts alike."""
    client = ArqRedis.from_url(redis_url)
    await client.delete(stream)
    await ensure_group(client, stream, "bench", start_id="$")

    async def keep_up() -> None:  # everything so far read and acked, without reading it
        while True:
            await client.xgroup_setid(stream, "bench", id="$")
            await asyncio.sleep(0.25)

    task = asyncio.create_task(keep_up())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.delete(stream)
        await client.aclose()


async def measure(args: argparse.Namespace, server_url: str, redis_url: str) -> None:
    name = f"dasi_bench_{uuid.uuid4().hex[:8]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    database_url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    await asyncio.to_thread(migrate.upgrade, database_url)
    # a stream of its own, as the database: the bench deletes it before and after (stream_kept_up)
    settings = Settings(database_url=database_url, redis_url=redis_url, events_stream=f"dasi:events:{name}")
    write_key = await _new_workspace(settings, args.window_age)
    await vacuum(database_url)  # a deployed store's previous generation was vacuumed long ago
    import base64

    headers = {
        "Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode(),
        "Content-Type": "application/json",
    }
    # enough for both loops at up to 40,000 events/s (a loop that runs out of batches just ends early)
    needed = int((args.seconds * 2 + 5) * 40_000 / BATCH)
    print(f"machine: {os.cpu_count()} cores; generating {needed:,} batches of {BATCH} ...", flush=True)
    print(f"dedupe window: the current generation {args.window_age:g} hours old", flush=True)
    half = needed // 2
    batches = make_batches(half, args.shoppers_per_batch) + make_batches(
        needed - half, args.shoppers_per_batch, seed=8
    )
    copy_rate = await copy_baseline(database_url, batches[:300])
    print(f"{'COPY baseline (same rows, bare table)':<34} {copy_rate:>9,.0f} events/s")

    try:
        async with stream_kept_up(redis_url, settings.events_stream):
            await _run_loops(args, settings, database_url, batches, headers)
    finally:
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _run_loops(
    args: argparse.Namespace,
    settings: Settings,
    database_url: str,
    batches: list[bytes],
    headers: dict[str, str],
) -> None:
    process = _start_ingest(settings, args.workers)
    publisher = _start_ingest_worker(settings)
    try:
        connector = aiohttp.TCPConnector(limit=args.concurrency * 4)
        async with aiohttp.ClientSession(connector=connector) as http:
            await _wait_ready(http)
            warm = batches[:20]
            await closed_loop(http, warm, 2, 4, headers)
            half = len(batches) // 2  # the open loop's batches, made apart (`main`)
            cpu_before = _cpu_by_pid(await _measured_processes(database_url, process.pid, publisher.pid))
            commits = await committed(database_url)
            machine = machine_busy_seconds()
            rate, latencies, errors = await closed_loop(
                http, batches[20:half], args.seconds, args.concurrency, headers
            )
            machine = machine_busy_seconds() - machine
            cpu_after = _cpu_by_pid(await _measured_processes(database_url, process.pid, publisher.pid))
            _report(f"closed loop, {args.concurrency} in flight", rate, latencies, errors)
            _report_cpu(cpu_before, cpu_after, machine, len(latencies) * BATCH)
            await asyncio.sleep(1.5)  # the backends' last counts reported
            _report_transactions(await committed(database_url) - commits, len(latencies))
            target = args.open_rate or min(args.rate, rate * 0.7)  # a rate it can sustain, for latency
            if not args.no_vacuum:
                print(f"{'  then VACUUM ANALYZE':<34} {await vacuum(database_url):9.1f} s", flush=True)
            stop_watching = asyncio.Event()
            watching = None
            if args.timeline:
                watching = asyncio.create_task(background_runs(database_url, stop_watching))
            rate, latencies, errors, timeline = await open_loop(
                http, batches[half:], args.seconds, target, headers
            )
            _report(f"open loop at {target:,.0f}/s", rate, latencies, errors)
            if watching is not None:
                stop_watching.set()
                _report_timeline(timeline, await watching)
    finally:
        for child in (process, publisher):
            child.terminate()
            child.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=30_000)
    parser.add_argument(
        "--open-rate",
        type=float,
        help="the open loop's rate, even above 70%% of the closed loop's (the target's own reading: 30000)",
    )
    parser.add_argument("--shoppers-per-batch", type=int, default=5)
    parser.add_argument("--window-age", type=float, default=WINDOW_AGE_HOURS, help=WINDOW_AGE_HELP)
    parser.add_argument(
        "--no-vacuum",
        action="store_true",
        help="leave the closed loop's rows to autovacuum, during the open loop (as before session 17)",
    )
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="the open loop's slowest batch each second; autovacuum's runs and checkpoints",
    )
    run(parser.parse_args())


if __name__ == "__main__":
    main()
