"""The outbox: an event ingest answered 2xx for reaches the stream (published by the ingest worker),
even if Redis was down then; publishers side by side never lose or double-claim a row."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from arq.cron import CronJob
from redis.exceptions import ConnectionError as RedisConnectionError

from services.ingest import relay, repository, worker
from services.ingest.main import create_app
from services.ingest.relay import Published, drain_outbox, publish_outbox_chunk, relay_outbox
from shared.contracts import EventsRecorded, decode
from shared.db import session_scope
from shared.redis import create_redis
from shared.streams import ensure_group
from shared.testing.fixtures import run_worker_burst, serve
from shared.worker import worker_settings
from tests.ingest.conftest import (
    events_of,
    profiles_of,
    published,
    stream_events,
    track,
    unpublished,
    write_key,
)

STREAM = "dasi:events"


def _batch(*names: str) -> dict[str, object]:
    return {"batch": [track(name, userId="user-1004") for name in names]}


async def _ingest_while_redis_is_down(settings, clock, shop, tmp_path):
    broken = settings.model_copy(update={"redis_url": f"unix://{tmp_path}/no-such.sock"})
    async with serve(create_app(broken, clock=clock), headers=write_key(shop.write_key)) as client:
        response = await client.post("/v1/batch", json=_batch("Product Viewed", "Order Completed"))
    assert response.status_code == 200 and response.json()["accepted"] == 2


async def test_redis_down_then_back_nothing_is_lost(settings, clock, db, redis, shop, tmp_path):
    await _ingest_while_redis_is_down(settings, clock, shop, tmp_path)
    events = await events_of(db, shop.workspace.id)
    assert len(events) == 2  # stored though Redis was down
    assert len(await unpublished(db)) == 2 and await stream_events(redis) == []

    down = create_redis(settings.model_copy(update={"redis_url": f"unix://{tmp_path}/no-such.sock"}))
    try:
        with pytest.raises(RedisConnectionError):  # the publisher's pass fails; the rows stay
            await drain_outbox(db, down, STREAM)
    finally:
        await down.aclose()
    assert len(await unpublished(db)) == 2

    assert await drain_outbox(db, redis, STREAM) == 2  # Redis is back
    announced = await stream_events(redis)
    assert sorted(m.event_id for m in announced) == sorted(e.id for e in events)
    assert {m.name for m in announced} == {"Product Viewed", "Order Completed"}
    assert await unpublished(db) == []
    assert await drain_outbox(db, redis, STREAM) == 0  # nothing published twice


async def test_the_stream_says_of_each_event_what_was_stored(client, db, redis, shop):
    """Postgres writes the entries: each event's id, profile, type and time as stored (to the
    microsecond, in UTC), and its name (quotes and backslashes escaped) only for the types segments
    key on."""
    batch = [
        track('장바구니 "담기" \\ 1', userId="user-1004", timestamp="2026-11-24T20:15:30.123456+09:00"),
        {"type": "page", "name": "/sale", "userId": "user-1004", "timestamp": "2026-11-24T11:16:00Z"},
        {"type": "identify", "userId": "user-1004", "traits": {"name": "김민지"}},
    ]
    assert (await client.post("/v1/batch", json={"batch": batch})).status_code == 200

    announced = {m.event_id: m for m in await published(db, redis)}
    stored = await events_of(db, shop.workspace.id)
    assert len(announced) == len(stored) == 3
    for event in stored:
        said = announced[event.id]
        assert (said.workspace_id, said.profile_id, said.type) == (
            event.workspace_id,
            event.profile_id,
            event.type,
        )
        assert said.occurred_at == event.occurred_at and said.occurred_at.utcoffset() == timedelta(0)
        assert said.name == (event.name if event.type != "identify" else None)
    assert {m.name for m in announced.values()} == {'장바구니 "담기" \\ 1', "/sale", None}  # escaped as JSON


async def test_a_job_that_cannot_reach_redis_fails_and_keeps_the_rows(settings, clock, db, shop, tmp_path):
    await _ingest_while_redis_is_down(settings, clock, shop, tmp_path)
    down = create_redis(settings.model_copy(update={"redis_url": f"unix://{tmp_path}/no-such.sock"}))
    ctx = {"sessionmaker": db, "redis": down, "clock": clock, "settings": settings}
    try:
        with pytest.raises(RedisConnectionError):  # the job fails; the cron starts another in 1 s
            await relay_outbox(ctx)
    finally:
        await down.aclose()
    assert len(await unpublished(db)) == 2


async def test_a_drain_takes_chunk_after_chunk_until_a_short_one(client, db, redis, shop):
    names = [f"Viewed {n}" for n in range(relay.RELAY_CHUNK + 3)]
    for name in names:  # an outbox row each: more than one chunk
        assert (await client.post("/v1/batch", json=_batch(name))).json()["accepted"] == 1
    assert await drain_outbox(db, redis, STREAM) == len(names)
    assert [m.name for m in await stream_events(redis)] == names
    assert await unpublished(db) == []


async def test_publishers_side_by_side_skip_each_others_rows(client, db, redis, shop):
    for names in (["A"], ["B", "C"], ["D"]):  # an outbox row each
        response = await client.post("/v1/batch", json=_batch(*names))
        assert response.json()["accepted"] == len(names)

    async with session_scope(db) as held:  # one publisher holds a chunk of one row, mid-publish
        assert await publish_outbox_chunk(held, redis, STREAM, limit=1) == Published(rows=1, events=1)
        assert await drain_outbox(db, redis, STREAM) == 3  # the other takes only the rest
    announced = await stream_events(redis)
    assert [m.name for m in announced] == ["A", "B", "C", "D"]  # each once, in the order stored
    assert await unpublished(db) == []


async def test_the_job_publishes_what_arrives_while_it_runs(settings, clock, client, db, redis, shop):
    ctx = {"sessionmaker": db, "redis": redis, "clock": clock, "settings": settings}
    job = asyncio.create_task(relay_outbox(ctx, for_seconds=2))
    await asyncio.sleep(0.2)
    response = await client.post("/v1/batch", json=_batch("Product Viewed"))
    assert response.status_code == 200
    for _ in range(100):  # typically within a pass or two (RELAY_IDLE_SLEEP)
        if await stream_events(redis):
            break
        await asyncio.sleep(0.02)
    assert [m.name for m in await stream_events(redis)] == ["Product Viewed"]
    assert await job == 1
    assert await unpublished(db) == []


async def test_the_publisher_runs_in_a_real_worker(settings, clock, db, redis, shop, tmp_path):
    await _ingest_while_redis_is_down(settings, clock, shop, tmp_path)
    WorkerSettings = worker_settings(
        "ingest", [relay_outbox], queue_name=worker.QUEUE, settings=settings, clock=clock
    )
    await redis.enqueue_job("relay_outbox", for_seconds=0.1, _queue_name=worker.QUEUE, _job_id="relay-now")

    ran = await run_worker_burst(WorkerSettings, settings)

    assert ran.jobs_complete == 1 and ran.jobs_failed == 0
    assert len(await stream_events(redis)) == 2
    assert await unpublished(db) == []


def test_the_worker_runs_the_publisher_every_second():
    [job] = [j for j in worker.WorkerSettings.cron_jobs if j.coroutine is relay_outbox]  # type: ignore[attr-defined]
    assert isinstance(job, CronJob)
    assert job.second == set(range(60)) and job.run_at_startup
    assert worker.WorkerSettings.queue_name == worker.QUEUE  # type: ignore[attr-defined]


async def test_events_merged_before_they_are_published_carry_the_merged_profile(client, db, redis, shop):
    """The outbox names events; their profile is read when they are published. A visitor's events
    still waiting when the visitor logs in reach the stream with the member's profile."""
    visitor = {"anonymousId": "visitor-77", "userId": None}
    login = {
        "type": "identify",
        "userId": "user-1004",
        "anonymousId": "visitor-77",
        "traits": {"name": "김민지"},
    }
    for batch in (
        _batch("Product Viewed", "Product Added"),  # the member, known already
        {"batch": [track("Product Viewed", **visitor), track("Cart Viewed", **visitor)]},
        {"batch": [login]},  # the visitor logs in: merged into the member
    ):
        assert (await client.post("/v1/batch", json=batch)).status_code == 200

    announced = await published(db, redis)
    [member] = await profiles_of(db, shop.workspace.id)
    assert member.user_id == "user-1004"
    assert len(announced) == 5 and {m.profile_id for m in announced} == {member.id}


async def test_events_go_a_few_hundred_to_an_entry_each_of_one_workspace(
    settings, clock, client, db, redis, shop, make_workspace, monkeypatch
):
    """One stream entry per workspace's run of stored events, cut at EVENTS_PER_ENTRY (2 here): a
    transaction stores its events in outbox rows of at most that many, and the publisher puts
    consecutive rows of one workspace in one entry while it holds no more."""
    monkeypatch.setattr(repository, "EVENTS_PER_ENTRY", 2)
    other = await make_workspace("다른 스토어")
    assert (await client.post("/v1/batch", json=_batch("A", "B", "C"))).status_code == 200
    async with serve(create_app(settings, clock=clock), headers=write_key(other.write_key)) as theirs:
        assert (await theirs.post("/v1/batch", json=_batch("D"))).status_code == 200
    assert (await client.post("/v1/batch", json=_batch("E"))).status_code == 200
    assert (await client.post("/v1/batch", json=_batch("F"))).status_code == 200

    assert await drain_outbox(db, redis, STREAM) == 6
    entries = [decode(fields) for _id, fields in await redis.xrange(STREAM)]
    assert all(isinstance(e, EventsRecorded) for e in entries)
    assert [(e.workspace_id, [m.name for m in e.events]) for e in entries] == [  # type: ignore[attr-defined]
        (shop.workspace.id, ["A", "B"]),
        (shop.workspace.id, ["C"]),
        (other.workspace.id, ["D"]),
        (shop.workspace.id, ["E", "F"]),  # two transactions' rows
    ]


async def test_the_job_trims_from_the_stream_what_every_consumer_finished(
    settings, clock, client, db, redis, shop
):
    await ensure_group(redis, STREAM, "segmenter")
    ctx = {"sessionmaker": db, "redis": redis, "clock": clock, "settings": settings}
    for name in ("A", "B"):  # an entry each
        assert (await client.post("/v1/batch", json=_batch(name))).status_code == 200
        await relay_outbox(ctx, for_seconds=0)
    assert await redis.xlen(STREAM) == 2  # nobody has read them

    [(_, entries)] = await redis.xreadgroup("segmenter", "c1", {STREAM: ">"}, count=1)
    await redis.xack(STREAM, "segmenter", entries[0][0])
    await relay_outbox(ctx, for_seconds=0)
    assert [m.name for m in await stream_events(redis)] == ["B"]
