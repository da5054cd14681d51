"""Dispatcher benchmark: send requests through the `dispatch` queue to the provider sandbox, end to end.

    .venv/bin/python -m infra.bench.dispatcher [--messages 20000] [--latencies 0,50] [--batch 100]

It starts its own servers (the embedded default under .dasi/bench, or DASI_DATABASE_URL /
DASI_REDIS_URL), a fresh database, the provider sandbox under uvicorn in a process of its own and ONE
dispatcher worker process (arq services.dispatcher.worker.WorkerSettings). Per sandbox latency it
enqueues `--messages` send requests in SendBatch jobs of `--batch` (alimtalk -> SMS chain, a Korean
template rendered per shopper, policy checks, attempts and outcomes recorded) and prints:

1. baseline, measured in the same run: NhnKakaoAdapter.submit of the same batches straight to the
   sandbox (16 in flight, no database, no queue): what the provider side alone allows;
2. the dispatcher: messages/s from the first enqueue to the last recorded outcome, and the
   enqueue -> recorded latency per message (p50 / p99). All batches are enqueued at once, so the
   latency is mostly time spent waiting in the queue behind the others (a backlog being drained);
3. the worker process's CPU time per message over the run (/proc), and the rate one core would
   sustain at that cost: on a shared machine the rate follows what the worker gets of the CPU, its
   CPU per message is what its code costs. The 1-minute load average before and after the run.

DASI_BENCH_PROFILE=/tmp/worker.prof runs the worker under cProfile (written when it stops).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
import orjson
from sqlalchemy.engine import make_url

from infra import migrate, stack
from infra.bench.measure import cpu_seconds
from services.dispatcher.jobs import enqueue_batch
from services.dispatcher.provider_settings import ProviderSettings
from services.dispatcher.providers.base import Channel, Outgoing
from services.dispatcher.providers.factory import build_http_client, build_providers
from shared.contracts import SendBatch, SendRequest
from shared.redis import create_redis
from shared.settings import PROJECT_ROOT, Settings

SANDBOX_PORT = 18031
SHOPPERS = 10_000
NAMES = ["김민지", "이서준", "박지우", "최하은", "정도윤", "강서연", "조예준", "윤지아"]


async def _connect(url: str, database: str | None = None) -> asyncpg.Connection:
    parsed = make_url(url)
    return await asyncpg.connect(
        host=parsed.query.get("host") or parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        database=database or parsed.database,
    )


async def _seed(database_url: str) -> tuple[uuid.UUID, uuid.UUID, list[uuid.UUID]]:
    """A workspace, its sender profile, an approved alimtalk template, an SMS template, shoppers."""
    conn = await _connect(database_url)
    now = datetime.now(UTC)
    workspace = uuid.uuid4()
    alimtalk, sms = uuid.uuid4(), uuid.uuid4()
    profiles = [uuid.uuid4() for _ in range(SHOPPERS)]
    try:
        await conn.execute(
            "INSERT INTO platform.workspaces (id, name, timezone, currency) VALUES ($1, '벤치마크 스토어', "
            "'Asia/Seoul', 'KRW')",
            workspace,
        )
        await conn.execute(
            "INSERT INTO dispatcher.sender_profiles (id, workspace_id, name, is_default, store_name, "
            "sender_numbers, opt_out_number, opt_out_verified, kakao_sender_key, created_at, updated_at) "
            "VALUES ($1, $2, '기본', true, '벤치마크 스토어', $3::jsonb, '0801234567', true, "
            "'dasi-sandbox-sender-key', $4, $4)",
            uuid.uuid4(),
            workspace,
            orjson.dumps([{"number": "15990000", "verified": True}]).decode(),
            now,
        )
        for tid, channel, body, extra in (
            (
                alimtalk,
                "alimtalk",
                "{{ profile.name }}님, 주문하신 {{ product.name }}이(가) 발송되었습니다. "
                "배송조회: {{ link }}",
                ("ORDER_SHIPPED", "approved"),
            ),
            (
                sms,
                "sms",
                "{{ profile.name }}님, 주문하신 {{ product.name }}이(가) 발송되었습니다.",
                (None, None),
            ),
        ):
            await conn.execute(
                "INSERT INTO dispatcher.templates (id, workspace_id, name, channel, is_ad, body, variables, "
                "alimtalk_template_code, review_state, created_at, updated_at) "
                "VALUES ($1, $2, $3, $4, false, $5, '{}'::jsonb, $6, $7, $8, $8)",
                tid,
                workspace,
                f"bench-{channel}",
                channel,
                body,
                extra[0],
                extra[1],
                now,
            )
        await conn.copy_records_to_table(
            "profiles",
            schema_name="ingest",
            columns=["id", "workspace_id", "user_id", "traits"],
            records=[
                (
                    pid,
                    workspace,
                    f"member-{i}",
                    orjson.dumps({"name": NAMES[i % len(NAMES)], "phone": f"010{i:08d}"}).decode(),
                )
                for i, pid in enumerate(profiles)
            ],
        )
    finally:
        await conn.close()
    return workspace, alimtalk, profiles


def _batches(
    workspace: uuid.UUID,
    template: uuid.UUID,
    sms: uuid.UUID,
    profiles: list[uuid.UUID],
    count: int,
    size: int,
    tag: str,
) -> list[SendBatch]:
    batches = []
    for start in range(0, count, size):
        requests = [
            SendRequest(
                idempotency_key=f"bench-{tag}-{n}",
                profile_id=profiles[n % len(profiles)],
                channels=["alimtalk", "sms"],
                templates={"alimtalk": template, "sms": sms},
                variables={"product.name": "수분크림", "link": f"https://go.dasi.shop/c/{n:06d}"},
                trigger_id=uuid.UUID(int=1),
                step="shipped",
            )
            for n in range(start, min(start + size, count))
        ]
        batches.append(SendBatch(workspace_id=workspace, messages=requests))
    return batches


def _start_sandbox() -> subprocess.Popen[bytes]:
    env = {**os.environ, "DASI_LOG_LEVEL": "WARNING", "DASI_SANDBOX_SEED": "7"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "infra.sandbox.main:create_app",
            "--port",
            str(SANDBOX_PORT),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=PROJECT_ROOT,
        env=env,
    )


def _start_worker(settings: Settings, appkey: str) -> subprocess.Popen[bytes]:
    url = f"http://127.0.0.1:{SANDBOX_PORT}"
    env = {
        **os.environ,
        "DASI_DATABASE_URL": settings.database_url or "",
        "DASI_REDIS_URL": settings.redis_url or "",
        "DASI_LOG_LEVEL": "WARNING",
        "DASI_DB_POOL_SIZE": "16",  # with its overflow, 32 connections for up to 48 jobs in flight
        "DASI_NHN_KAKAO_BASE_URL": url,
        "DASI_NHN_KAKAO_APPKEY": appkey,
        "DASI_NHN_SMS_BASE_URL": url,
        "DASI_NHN_SMS_APPKEY": appkey,
        "DASI_FCM_BASE_URL": url,
        "DASI_FCM_PROJECT_ID": appkey,
        "DASI_EMAIL_BASE_URL": url,
        "DASI_EMAIL_API_KEY": appkey,
    }
    log = settings.state_dir / "bench-dispatcher-worker.log"  # arq logs every job; keep them off the report
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                *(
                    ["-m", "cProfile", "-o", os.environ["DASI_BENCH_PROFILE"]]
                    if "DASI_BENCH_PROFILE" in os.environ
                    else []
                ),
                "-m",
                "arq",
                "services.dispatcher.worker.WorkerSettings",
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _wait_ready(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready")


async def _set_latency(url: str, appkey: str, latency_ms: int) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        for provider in ("kakao", "sms"):
            r = await client.put(f"/sandbox/{appkey}/providers/{provider}", json={"latency_ms": latency_ms})
            r.raise_for_status()


async def baseline(url: str, appkey: str, count: int, size: int, concurrency: int = 16) -> float:
    """Messages/s of NhnKakaoAdapter.submit alone (batches of `size`, `concurrency` in flight)."""
    settings = ProviderSettings(nhn_kakao_base_url=url, nhn_kakao_appkey=f"{appkey}-baseline")
    client = build_http_client(settings)
    kakao = build_providers(settings, client).kakao
    batches = [
        [
            Outgoing(
                message_id=uuid.uuid4(),
                idempotency_key=f"base-{start + i}-{uuid.uuid4().hex[:8]}",
                channel=Channel.alimtalk,
                to=f"010{(start + i) % SHOPPERS:08d}",
                sender="dasi-sandbox-sender-key",
                body=f"{NAMES[i % len(NAMES)]}님, 주문하신 수분크림이(가) 발송되었습니다.",
                template_code="ORDER_SHIPPED",
                template_parameters={"profile.name": NAMES[i % len(NAMES)], "product.name": "수분크림"},
            )
            for i in range(size)
        ]
        for start in range(0, count, size)
    ]
    queue = list(batches)

    async def worker() -> None:
        while queue:
            await kakao.submit(queue.pop())

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return sum(len(b) for b in batches) / (time.perf_counter() - started)
    finally:
        await client.aclose()


async def dispatch_run(
    settings: Settings, batches: list[SendBatch], tag: str, worker_pid: int | None = None
) -> tuple[float, list[float], dict[str, int], float | None]:
    """messages/s, latencies, outcomes, and the worker's CPU seconds per message over the run (on a
    machine shared with other work the rate varies with what the worker gets of the CPU; its CPU per
    message is what its code costs)."""
    redis = create_redis(settings)
    conn = await _connect(settings.require_database_url())
    total = sum(len(b.messages) for b in batches)
    cpu_before = cpu_seconds(worker_pid) if worker_pid else None
    try:
        started = time.perf_counter()
        for b in batches:
            await enqueue_batch(redis, b.model_copy(update={"enqueued_at": datetime.now(UTC)}))
        pattern = f"bench-{tag}-%"
        while True:
            done = await conn.fetchval(
                "SELECT count(*) FROM dispatcher.messages WHERE idempotency_key LIKE $1"
                " AND status NOT IN ('queued', 'sending')",
                pattern,
            )
            if done >= total:
                cpu_after = cpu_seconds(worker_pid) if worker_pid else None
                break
            if time.perf_counter() - started > 600:
                raise RuntimeError(f"only {done} of {total} recorded after 10 minutes")
            # the rate comes from the rows' own timestamps, not from this loop: look rarely, since
            # each look is a scan of the messages that takes CPU from the worker being measured
            await asyncio.sleep(0.5)
        rows = await conn.fetch(
            "SELECT status, enqueued_at, updated_at FROM dispatcher.messages WHERE idempotency_key LIKE $1",
            pattern,
        )
        first = min(r["enqueued_at"] for r in rows)
        last = max(r["updated_at"] for r in rows)
        rate = total / (last - first).total_seconds()
        latencies = [(r["updated_at"] - r["enqueued_at"]).total_seconds() for r in rows]
        statuses: dict[str, int] = {}
        for r in rows:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
        return rate, latencies, statuses, (cpu / total if cpu is not None else None)
    finally:
        await conn.close()
        await redis.aclose()


def _ms(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000


def run(args: argparse.Namespace) -> None:
    base = Settings()
    if not base.database_url:
        base = base.model_copy(update={"state_dir": base.state_dir / "bench"})
    with stack.servers_for_command(base) as ready:
        asyncio.run(measure(args, ready.require_database_url(), ready.require_redis_url(), base))


async def measure(args: argparse.Namespace, server_url: str, redis_url: str, base: Settings) -> None:
    name = f"dasi_bench_{uuid.uuid4().hex[:8]}"
    admin = await _connect(server_url, "postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    database_url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    await asyncio.to_thread(migrate.upgrade, database_url)
    settings = Settings(database_url=database_url, redis_url=redis_url, state_dir=base.state_dir)
    workspace, alimtalk, profiles = await _seed(database_url)
    conn = await _connect(database_url)
    sms = await conn.fetchval("SELECT id FROM dispatcher.templates WHERE channel = 'sms'")
    await conn.close()
    redis = create_redis(settings)
    await redis.delete("arq:queue:dispatch")
    await redis.aclose()
    appkey = uuid.uuid4().hex
    url = f"http://127.0.0.1:{SANDBOX_PORT}"
    sandbox = _start_sandbox()
    worker = _start_worker(settings, appkey)
    try:
        await _wait_ready(url)
        print(f"dispatcher: {args.messages:,} messages per run, {args.batch} per job, one worker process")
        warm = _batches(workspace, alimtalk, sms, profiles, 2_000, args.batch, "warm")
        await dispatch_run(settings, warm, "warm")
        for latency in args.latencies:
            await _set_latency(url, appkey, latency)
            await _set_latency(url, f"{appkey}-baseline", latency)
            raw = await baseline(url, appkey, args.messages, args.batch)
            head = f"sandbox latency {latency:>3} ms"
            print(f"{head}  baseline: adapter submit alone (no DB, 16 in flight) {raw:>9,.0f} msg/s")
            tag = f"l{latency}"
            batches = _batches(workspace, alimtalk, sms, profiles, args.messages, args.batch, tag)
            load = os.getloadavg()[0]
            rate, latencies, statuses, cpu = await dispatch_run(settings, batches, tag, worker.pid)
            per_core = f"{cpu * 1e6:5.0f} us CPU/msg (one core: {1 / cpu:6,.0f} msg/s)" if cpu else ""
            print(
                f"{head}  dispatcher end to end (queue, render, policy, record) {rate:>9,.0f} msg/s"
                f"   enqueue->recorded p50 {_ms(latencies, 50):7.1f} ms  p99 {_ms(latencies, 99):7.1f} ms"
                f"   worker {per_core}   load {load:.1f}->{os.getloadavg()[0]:.1f}   outcomes {statuses}"
            )
    finally:
        for child in (worker, sandbox):
            child.terminate()
            child.wait(timeout=20)
        admin = await _connect(server_url, "postgres")
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument(
        "--latencies",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[0, 50],
        help="sandbox ms, comma-separated",
    )
    run(parser.parse_args())


if __name__ == "__main__":
    main()
