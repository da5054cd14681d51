"""Monthly event partitions: made ahead, stray rows taken over from DEFAULT, old months dropped whole.
Each test works in a transaction it rolls back (DDL is transactional in Postgres)."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import text

from services.ingest.partitions import Month, drop_months_before, ensure_months_ahead, existing_months


async def insert_event(session, when: str) -> uuid.UUID:
    event_id = uuid.uuid4()
    await session.execute(
        text("""
            INSERT INTO ingest.events
                (id, workspace_id, profile_id, message_id, type, occurred_at, received_at)
            VALUES (:id, :ws, :p, :m, 'track', :at, now())"""),
        {
            "id": event_id,
            "ws": uuid.uuid4(),
            "p": uuid.uuid4(),
            "m": event_id.hex,
            "at": datetime.fromisoformat(when),
        },
    )
    return event_id


async def partition_of(session, event_id: uuid.UUID) -> str:
    return (
        await session.execute(
            text("SELECT tableoid::regclass::text FROM ingest.events WHERE id = :id"), {"id": event_id}
        )
    ).scalar_one()


async def test_months_ahead_are_made_and_new_events_land_in_them(db):
    async with db() as session:
        made = await ensure_months_ahead(session, date(2027, 11, 15), months_ahead=3)
        assert made == ["events_2028_01", "events_2028_02"]
        assert await ensure_months_ahead(session, date(2027, 11, 15), months_ahead=3) == []
        event = await insert_event(session, "2028-01-31T23:30:00+00")
        assert await partition_of(session, event) == "ingest_partitions.events_2028_01"
        await session.rollback()


async def test_rows_of_a_new_month_waiting_in_default_are_taken_over(db):
    async with db() as session:
        stray = await insert_event(session, "2028-05-02T00:00:00+00")  # a device with a clock far ahead
        assert await partition_of(session, stray) == "ingest_partitions.events_default"
        await ensure_months_ahead(session, date(2028, 3, 1), months_ahead=2)
        assert await partition_of(session, stray) == "ingest_partitions.events_2028_05"
        await session.rollback()


async def test_old_months_are_dropped_whole(db):
    async with db() as session:
        old = await insert_event(session, "2026-01-15T00:00:00+00")
        kept = await insert_event(session, "2026-03-01T00:00:00+00")
        dropped = await drop_months_before(session, Month(2026, 3))
        assert dropped == ["events_2026_01", "events_2026_02"]
        assert "events_2026_03" in await existing_months(session)
        remaining = set((await session.execute(text("SELECT id FROM ingest.events"))).scalars())
        assert kept in remaining and old not in remaining
        await session.rollback()


def test_month_arithmetic():
    assert Month(2026, 11).plus(3) == Month(2027, 2)
    assert Month(2026, 1).plus(-1) == Month(2025, 12)
    assert Month(2025, 12) < Month(2026, 1)


async def test_the_worker_job_keeps_months_ahead(db, settings, clock):
    from services.ingest.partitions import maintain_partitions

    ctx = {"sessionmaker": db, "settings": settings, "clock": clock}
    result = await maintain_partitions(ctx)
    assert result["dropped"] == []  # no retention configured
    async with db() as session:
        have = await existing_months(session)
    today = Month.of(clock.now().date())
    assert {today.plus(n).table for n in range(4)} <= have
