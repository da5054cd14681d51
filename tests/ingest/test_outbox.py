"""The outbox: an event ingest answered 2xx for reaches the stream even if Redis was down then."""

from __future__ import annotations

from datetime import timedelta

import pytest
from arq.cron import CronJob
from redis.exceptions import ConnectionError as RedisConnectionError

from services.ingest import worker
from services.ingest.main import create_app
from services.ingest.relay import RELAY_GRACE, relay_outbox
from shared.redis import create_redis
from shared.testing.fixtures import run_worker_burst, serve
from shared.worker import worker_settings
from tests.ingest.conftest import events_of, outbox_rows, stream_events, track, write_key


async def _ingest_while_redis_is_down(settings, clock, shop, tmp_path):
    broken = settings.model_copy(update={"redis_url": f"unix://{tmp_path}/no-such.sock"})
    batch = {
        "batch": [track("Product Viewed", userId="user-1004"), track("Order Completed", userId="user-1004")]
    }
    async with serve(create_app(broken, clock=clock), headers=write_key(shop.write_key)) as client:
        response = await client.post("/v1/batch", json=batch)
    assert response.status_code == 200 and response.json()["accepted"] == 2


async def test_redis_down_then_the_relay_publishes_everything(settings, clock, db, redis, shop, tmp_path):
    await _ingest_while_redis_is_down(settings, clock, shop, tmp_path)
    events = await events_of(db, shop.workspace.id)
    assert len(events) == 2  # stored though Redis was down
    assert len(await outbox_rows(db)) == 2 and await stream_events(redis) == []

    ctx = {"sessionmaker": db, "redis": redis, "clock": clock, "settings": settings}
    assert await relay_outbox(ctx) == 0  # too fresh: the request that wrote them may still publish
    clock.advance(RELAY_GRACE + timedelta(seconds=1))
    assert await relay_outbox(ctx) == 2

    announced = await stream_events(redis)
    assert sorted(m.event_id for m in announced) == sorted(e.id for e in events)
    assert {m.name for m in announced} == {"Product Viewed", "Order Completed"}
    assert await outbox_rows(db) == []
    assert await relay_outbox(ctx) == 0  # nothing published twice by the relay


async def test_a_relay_that_cannot_reach_redis_keeps_the_rows(settings, clock, db, shop, tmp_path):
    await _ingest_while_redis_is_down(settings, clock, shop, tmp_path)
    clock.advance(timedelta(minutes=1))
    down = create_redis(settings.model_copy(update={"redis_url": f"unix://{tmp_path}/no-such.sock"}))
    ctx = {"sessionmaker": db, "redis": down, "clock": clock, "settings": settings}
    try:
        with pytest.raises(RedisConnectionError):  # the job fails; the cron tries again in 5 s
            await relay_outbox(ctx)
    finally:
        await down.aclose()
    assert len(await outbox_rows(db)) == 2


async def test_the_relay_job_runs_in_a_real_worker(settings, clock, db, redis, shop, tmp_path):
    await _ingest_while_redis_is_down(settings, clock, shop, tmp_path)
    clock.advance(timedelta(minutes=1))
    WorkerSettings = worker_settings(
        "ingest", [relay_outbox], queue_name=worker.QUEUE, settings=settings, clock=clock
    )
    await redis.enqueue_job("relay_outbox", _queue_name=worker.QUEUE, _job_id="relay-now")

    ran = await run_worker_burst(WorkerSettings, settings)

    assert ran.jobs_complete == 1 and ran.jobs_failed == 0
    assert len(await stream_events(redis)) == 2
    assert await outbox_rows(db) == []


def test_the_worker_runs_the_relay_every_few_seconds():
    [job] = [j for j in worker.WorkerSettings.cron_jobs if j.coroutine is relay_outbox]  # type: ignore[attr-defined]
    assert isinstance(job, CronJob)
    assert job.second is not None and len(job.second) >= 6  # at least every 10 s
    assert worker.WorkerSettings.queue_name == worker.QUEUE  # type: ignore[attr-defined]
