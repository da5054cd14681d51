"""The dedupe window: how long a messageId is remembered.

A batch claims its messageIds in the current generation of `received_messages` (one of three LIST
partitions), after looking for them in the previous one (`repository.lock_claim_and_find`). Once the
current generation is `DASI_DEDUPE_WINDOW_HOURS` old, the ingest worker starts the next one: it
empties that partition, which held the generation before the previous one, and makes it current. A
messageId is so recognised for at least one window after it was first received and at most two, and
the table holds about two windows of ids, however long the store has sent events. Segment keeps "at
least 24 hours" of messageIds; the default window here is 7 days (SDK retries come within minutes,
an app's queue may wait for the next launch).

The partition is emptied by TRUNCATE: whole, no row-by-row delete, no vacuum debt. It waits for the
batches in flight, and batches wait for it (a moment); `ROTATION_LOCK_TIMEOUT` bounds that, and a
rotation that cannot get its lock is left to the next run.

A message made after the current generation started cannot be in the previous one, so that is not
searched for it: ~4-6 us of Postgres an id saved, most of a window long (from `PROBE_MARGIN` after a
generation starts). A message's making time is known when its device sent both `timestamp` and
`sentAt`: Segment's clock-skew correction puts `timestamp` on the server's clock, off by the
network's delay only (service.py, `made_at`). Without both, or when the corrected time is later
than the request's arrival (the device's clock changed between the two), the previous generation is
searched. `PROBE_MARGIN` covers the delay and the clocks of the servers; a repeat could be missed
only if a device's clock went back by more than that between making a message and sending it, and
its first sending had been answered in the previous generation without the answer arriving.

The generation is read from the table (`dedupe_window`), never from a process's clock: a claim must
never use an older generation than an earlier claim of the same messageId, or it would not look
where that one wrote. Claims of one shopper run one after the other (advisory locks), and each
reads the row in its own statement, so a later claim sees the same generation or a newer one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest.models import DEDUPE_GENERATIONS, PARTITIONS_SCHEMA
from shared.worker import job_session

log = structlog.get_logger(__name__)

ROTATION_LOCK_TIMEOUT = "2s"
PROBE_MARGIN = timedelta(days=1)  # a message made this long after a generation started skips the search
_LOCK_NOT_AVAILABLE = "55P03"


def partition(generation: int) -> str:
    return f"{PARTITIONS_SCHEMA}.received_messages_{generation}"


async def start_next_generation_if_due(session: AsyncSession, now: datetime, window: timedelta) -> int | None:
    """Start the next generation if the current one is `window` old: empty its partition and make it
    current. Returns the generation started, or None if it was not due."""
    await session.execute(  # the row migration 0013 made; claims take generation 0 without it
        text(
            "INSERT INTO ingest.dedupe_window (generation, started_at) VALUES (0, :now)"
            " ON CONFLICT DO NOTHING"
        ),
        {"now": now},
    )
    current, started_at = (
        await session.execute(text("SELECT generation, started_at FROM ingest.dedupe_window FOR UPDATE"))
    ).one()
    if now - started_at < window:
        return None
    following = (current + 1) % DEDUPE_GENERATIONS
    await session.execute(text(f"SET LOCAL lock_timeout = '{ROTATION_LOCK_TIMEOUT}'"))
    await session.execute(text(f"TRUNCATE {partition(following)}"))  # built from a number, never input
    await session.execute(
        text("UPDATE ingest.dedupe_window SET generation = :generation, started_at = :now"),
        {"generation": following, "now": now},
    )
    return following


async def rotate_dedupe_window(ctx: dict[str, Any]) -> int | None:
    """arq job (hourly cron, and at start): start the next generation when it is due."""
    window = timedelta(hours=ctx["settings"].dedupe_window_hours)
    try:
        async with job_session(ctx) as session:
            started = await start_next_generation_if_due(session, ctx["clock"].now(), window)
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
            raise
        log.warning("dedupe_rotation_postponed", reason="lock timeout", timeout=ROTATION_LOCK_TIMEOUT)
        return None
    if started is not None:
        log.info("dedupe_generation_started", generation=started)
    return started
