"""The dedupe window (services/ingest/dedupe.py): a repeated messageId is ignored for at least one
window after it was first received; the ingest worker empties the oldest generation of ids."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, text

from services.ingest import dedupe, repository, worker
from services.ingest.main import create_app
from services.ingest.models import DedupeWindow, ReceivedMessage
from shared.db import driver_transaction, session_scope
from shared.testing.fixtures import serve
from tests.ingest.conftest import events_of, track, write_key

WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class _Claim:
    message_id: str
    made_at: float | None = None


def _ctx(settings, clock, db) -> dict[str, object]:
    return {
        "settings": settings.model_copy(update={"dedupe_window_hours": 24 * 7}),
        "clock": clock,
        "sessionmaker": db,
    }


async def _start_window(ctx, db) -> None:
    """Generation 0 from the test's clock on (the row migration 0013 made holds the real time)."""
    async with session_scope(db) as session:
        await session.execute(text("DELETE FROM ingest.dedupe_window"))
    assert await dedupe.rotate_dedupe_window(ctx) is None


async def _send(client, message_id: str, event: str = "장바구니 담기") -> dict[str, int]:
    response = await client.post(
        "/v1/batch", json={"batch": [track(event, userId="user-1004", messageId=message_id)]}
    )
    assert response.status_code == 200
    return {key: response.json()[key] for key in ("accepted", "duplicates")}


async def _received(db) -> dict[int, int]:
    async with session_scope(db) as session:
        rows = await session.execute(
            select(ReceivedMessage.generation, func.count()).group_by(ReceivedMessage.generation)
        )
        return dict(rows.all())


async def test_a_repeat_a_window_later_is_still_ignored(settings, clock, client, db, shop):
    ctx = _ctx(settings, clock, db)
    await _start_window(ctx, db)
    assert await _send(client, "msg-1") == {"accepted": 1, "duplicates": 0}

    clock.advance(WINDOW - timedelta(minutes=1))
    assert await dedupe.rotate_dedupe_window(ctx) is None  # not due yet
    clock.advance(timedelta(minutes=1))
    assert await dedupe.rotate_dedupe_window(ctx) == 1

    assert await _send(client, "msg-1", "다른 이벤트") == {"accepted": 1, "duplicates": 1}
    assert [e.name for e in await events_of(db, shop.workspace.id)] == ["장바구니 담기"]
    assert await _received(db) == {0: 1}  # found in the previous generation, not claimed again


async def _plant_in_generation(db, workspace_id: uuid.UUID, message_id: str, generation: int) -> None:
    async with session_scope(db) as session:
        await session.execute(
            text("INSERT INTO ingest.received_messages VALUES (:ws, :message_id, :gen)"),
            {"ws": workspace_id, "message_id": message_id, "gen": generation},
        )


async def _send_made(client, message_id: str, made_at: datetime, sent_at: datetime | None) -> dict[str, int]:
    """A message made at `made_at`, sent at `sent_at` (by the same, right, clock)."""
    batch: dict[str, object] = {
        "batch": [track(userId="user-1004", messageId=message_id, timestamp=made_at.isoformat())]
    }
    if sent_at is not None:
        batch["sentAt"] = sent_at.isoformat()
    response = await client.post("/v1/batch", json=batch)
    assert response.status_code == 200
    return {key: response.json()[key] for key in ("accepted", "duplicates")}


async def test_the_previous_generation_is_searched_only_for_messages_that_may_be_in_it(
    settings, clock, client, db, shop
):
    ctx = _ctx(settings, clock, db)
    await _start_window(ctx, db)
    made_early = clock.now() + timedelta(hours=1)
    await _send_made(client, "msg-resent", made_early, sent_at=made_early)  # generation 0
    clock.advance(WINDOW)
    assert await dedupe.rotate_dedupe_window(ctx) == 1
    clock.advance(dedupe.PROBE_MARGIN + timedelta(hours=1))
    now = clock.now()
    # ids as if generation 0 held them: a message made after generation 1 started cannot be there
    for message_id in ("msg-new", "msg-without-sent-at", "msg-from-a-clock-gone-back"):
        await _plant_in_generation(db, shop.workspace.id, message_id, 0)

    # made before generation 1 started: searched for, and found
    assert await _send_made(client, "msg-resent", made_early, sent_at=now) == {"accepted": 1, "duplicates": 1}
    # made a minute ago, the clocks say: not searched for
    assert await _send_made(client, "msg-new", now - timedelta(minutes=1), sent_at=now) == {
        "accepted": 1,
        "duplicates": 0,
    }
    # without sentAt, the device's clock may be wrong: searched for
    assert await _send_made(client, "msg-without-sent-at", now, sent_at=None) == {
        "accepted": 1,
        "duplicates": 1,
    }
    # corrected to a time after its arrival: the device's clock changed in between; searched for
    made_later = now + timedelta(hours=2)
    assert await _send_made(client, "msg-from-a-clock-gone-back", made_later, sent_at=now) == {
        "accepted": 1,
        "duplicates": 1,
    }
    assert await _received(db) == {0: 4, 1: 1}


async def test_within_the_margin_after_a_generation_started_every_message_is_searched_for(
    settings, clock, client, db, shop
):
    ctx = _ctx(settings, clock, db)
    await _start_window(ctx, db)
    clock.advance(WINDOW)
    assert await dedupe.rotate_dedupe_window(ctx) == 1
    clock.advance(dedupe.PROBE_MARGIN - timedelta(minutes=1))
    await _plant_in_generation(db, shop.workspace.id, "msg-1", 0)

    now = clock.now()
    assert await _send_made(client, "msg-1", now, sent_at=now) == {"accepted": 1, "duplicates": 1}


async def test_two_windows_later_a_message_id_is_new_again_and_its_generation_is_emptied(
    settings, clock, client, db, shop
):
    ctx = _ctx(settings, clock, db)
    await _start_window(ctx, db)
    await _send(client, "msg-old")  # generation 0
    clock.advance(WINDOW)
    assert await dedupe.rotate_dedupe_window(ctx) == 1
    await _send(client, "msg-newer")  # generation 1
    clock.advance(WINDOW)
    assert await dedupe.rotate_dedupe_window(ctx) == 2

    assert await _send(client, "msg-old") == {"accepted": 1, "duplicates": 0}  # two windows on
    assert await _send(client, "msg-newer") == {"accepted": 1, "duplicates": 1}  # one window on
    assert sorted(e.message_id for e in await events_of(db, shop.workspace.id)) == [
        "msg-newer",
        "msg-old",
        "msg-old",
    ]
    assert await _received(db) == {0: 1, 1: 1, 2: 1}
    clock.advance(WINDOW)
    assert await dedupe.rotate_dedupe_window(ctx) == 0
    assert await _received(db) == {1: 1, 2: 1}  # generation 0 emptied (TRUNCATE) as it starts again


async def test_another_workspace_never_meets_the_previous_generation_of_this_one(
    settings, clock, client, db, shop, make_workspace
):
    ctx = _ctx(settings, clock, db)
    await _start_window(ctx, db)
    await _send(client, "msg-1")
    clock.advance(WINDOW)
    assert await dedupe.rotate_dedupe_window(ctx) == 1

    other = await make_workspace("다른 스토어")
    async with serve(create_app(settings, clock=clock), headers=write_key(other.write_key)) as theirs:
        assert await _send(theirs, "msg-1") == {"accepted": 1, "duplicates": 0}
    assert await _send(client, "msg-1") == {"accepted": 1, "duplicates": 1}
    assert [e.message_id for e in await events_of(db, other.workspace.id)] == ["msg-1"]


async def test_ingest_dedupes_without_the_window_row(client, db, shop):
    """The row is made by migration 0013 (and by the job); without it, batches use generation 0
    instead of storing nothing."""
    async with session_scope(db) as session:
        await session.execute(text("DELETE FROM ingest.dedupe_window"))
        assert await session.scalar(select(func.count()).select_from(DedupeWindow)) == 0
    assert await _send(client, "msg-1") == {"accepted": 1, "duplicates": 0}
    assert await _send(client, "msg-1") == {"accepted": 1, "duplicates": 1}
    assert await _received(db) == {0: 1}


async def test_a_rotation_that_cannot_get_its_lock_waits_for_the_next_run(
    settings, clock, client, db, shop, monkeypatch
):
    """A batch's transaction holds the partitions; the rotation gives up after its lock timeout
    instead of holding every later batch behind it, and the next run does it."""
    ctx = _ctx(settings, clock, db)
    await _start_window(ctx, db)
    clock.advance(WINDOW)
    monkeypatch.setattr(dedupe, "ROTATION_LOCK_TIMEOUT", "200ms")
    async with driver_transaction(db) as batch_in_flight:
        await repository.lock_claim_and_find(batch_in_flight, shop.workspace.id, [[_Claim("msg-1")]], [])
        assert await dedupe.rotate_dedupe_window(ctx) is None
    async with session_scope(db) as session:
        assert (await session.execute(text("SELECT generation FROM ingest.dedupe_window"))).scalar() == 0
    assert await dedupe.rotate_dedupe_window(ctx) == 1


def test_the_ingest_worker_rotates_hourly_and_at_start():
    [job] = [j for j in worker.WorkerSettings.cron_jobs if j.coroutine is dedupe.rotate_dedupe_window]
    assert job.run_at_startup and job.minute == {20}
