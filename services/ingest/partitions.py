"""Monthly partitions of `ingest.events`: made ahead of time, and old months dropped whole.

Migration 0002 made 2026-01 .. 2027-12 and a DEFAULT partition (clients with wrong clocks). The
ingest worker runs `maintain_partitions` daily: it makes the next months' partitions and, when
`DASI_EVENTS_RETENTION_MONTHS` is set, drops months older than that. Dropping a month is a
`DROP TABLE`: no row-by-row delete, no vacuum debt. If the DEFAULT partition already holds rows of a
month being made (a far-future clock), they are moved into the new partition in the same transaction.
SQL here is built from month names and dates this module computes, never from input.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.worker import job_session

log = structlog.get_logger(__name__)

SCHEMA = "ingest_partitions"
DEFAULT_PARTITION = f"{SCHEMA}.events_default"
MONTHS_AHEAD = 3


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def of(cls, day: date) -> Month:
        return cls(day.year, day.month)

    def plus(self, months: int) -> Month:
        index = self.year * 12 + self.month - 1 + months
        return Month(index // 12, index % 12 + 1)

    @property
    def table(self) -> str:
        return f"events_{self.year}_{self.month:02d}"

    @property
    def start(self) -> str:
        return f"{self.year}-{self.month:02d}-01 00:00:00+00"


async def existing_months(session: AsyncSession) -> set[str]:
    rows = await session.execute(
        text(
            "SELECT tablename FROM pg_tables "
            "WHERE schemaname = :schema AND tablename ~ '^events_[0-9]{4}_[0-9]{2}$'"
        ),
        {"schema": SCHEMA},
    )
    return {row[0] for row in rows}


async def create_month(session: AsyncSession, month: Month) -> None:
    """Create one month's partition, taking over any of its rows the DEFAULT partition holds."""
    bounds = f"FROM ('{month.start}') TO ('{month.plus(1).start}')"
    in_range = f"occurred_at >= '{month.start}' AND occurred_at < '{month.plus(1).start}'"
    stray = (
        await session.execute(text(f"SELECT count(*) FROM {DEFAULT_PARTITION} WHERE {in_range}"))
    ).scalar()
    if not stray:
        await session.execute(
            text(f"CREATE TABLE {SCHEMA}.{month.table} PARTITION OF ingest.events FOR VALUES {bounds}")
        )
        return
    await session.execute(text(f"ALTER TABLE ingest.events DETACH PARTITION {DEFAULT_PARTITION}"))
    await session.execute(
        text(f"CREATE TABLE {SCHEMA}.{month.table} PARTITION OF ingest.events FOR VALUES {bounds}")
    )
    await session.execute(
        text(f"INSERT INTO ingest.events SELECT * FROM {DEFAULT_PARTITION} WHERE {in_range}")
    )
    await session.execute(text(f"DELETE FROM {DEFAULT_PARTITION} WHERE {in_range}"))
    await session.execute(text(f"ALTER TABLE ingest.events ATTACH PARTITION {DEFAULT_PARTITION} DEFAULT"))
    log.info("partition_took_over_default_rows", partition=month.table, rows=stray)


async def ensure_months_ahead(
    session: AsyncSession, today: date, months_ahead: int = MONTHS_AHEAD
) -> list[str]:
    have = await existing_months(session)
    made = []
    for offset in range(months_ahead + 1):
        month = Month.of(today).plus(offset)
        if month.table not in have:
            await create_month(session, month)
            made.append(month.table)
    return made


async def drop_months_before(session: AsyncSession, keep_from: Month) -> list[str]:
    """Drop whole months older than `keep_from` (retention)."""
    dropped = []
    for table in sorted(await existing_months(session)):
        year, month = int(table[7:11]), int(table[12:14])
        if Month(year, month) < keep_from:
            await session.execute(text(f"DROP TABLE {SCHEMA}.{table}"))
            dropped.append(table)
    return dropped


async def maintain_partitions(ctx: dict[str, Any]) -> dict[str, list[str]]:
    """arq job (daily cron): months ahead made, months past retention dropped."""
    today = ctx["clock"].now().astimezone(UTC).date()
    retention = ctx["settings"].events_retention_months
    async with job_session(ctx) as session:
        made = await ensure_months_ahead(session, today)
        dropped = await drop_months_before(session, Month.of(today).plus(-retention)) if retention else []
    if made or dropped:
        log.info("partitions_maintained", made=made, dropped=dropped)
    return {"made": made, "dropped": dropped}
