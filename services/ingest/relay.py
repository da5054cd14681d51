"""The event outbox and its publisher.

Every transaction that stores events writes outbox rows holding what the stream says of each (id,
time, profile, type, name) as the JSON it is published as, up to a few hundred events a row;
requests (and imports) only write those rows. The ingest worker
publishes them: `relay_outbox` runs every second (cron) and, for about a second, drains the outbox
and sleeps RELAY_IDLE_SLEEP between empty passes, so an event typically reaches the stream some
50-100 ms after its commit.

A chunk is published by `publish_outbox_chunk`, in one transaction: take up to RELAY_CHUNK outbox
rows (one DELETE of the oldest, `FOR UPDATE SKIP LOCKED`, so publishers in several workers never
take the same rows), give the events of profiles merged away since then the profile they have now,
then XADD the events, a few hundred to an entry (consecutive rows of one workspace share one), in
one round trip;
the transaction commits only after XADD succeeded. Redis down: the transaction rolls back and the
rows stay for the next pass. A crash between XADD and the commit publishes those events again:
delivery is at least once, never lost; consumers dedupe by event_id. Each run of the job ends by
trimming from the stream what every consumer group has acked (and anything older than
`events_stream_keep_hours`): nothing else removes entries.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ingest import repository
from shared.contracts import EventsRecorded
from shared.db import session_scope
from shared.publisher import publish_fields
from shared.settings import Settings
from shared.streams import trim_finished

RELAY_CHUNK = 20  # outbox rows (stored transactions, up to a few thousand events each) taken at once
RELAY_IDLE_SLEEP = 0.05  # seconds between passes that found the outbox empty
RELAY_LOOP_SECONDS = 0.95  # how long one run of the job keeps draining; the cron starts one a second

_ENTRY_VERSION = str(EventsRecorded.version)


def _fields(entry: repository.OutboxEntry) -> dict[str, str | bytes]:
    return {"kind": EventsRecorded.kind, "v": _ENTRY_VERSION, "body": entry.body}


@dataclass(frozen=True)
class Published:
    rows: int  # outbox rows taken
    events: int


async def publish_outbox_chunk(
    session: AsyncSession, redis: ArqRedis, stream: str, limit: int = RELAY_CHUNK
) -> Published:
    """Take up to `limit` outbox rows and XADD their events as `EventsRecorded` entries (their bodies
    were written as the events were stored: `repository.take_outbox`; tests/ingest/test_outbox.py
    decodes them with the contract). Raises (so the caller's transaction rolls back and the rows
    stay) when Redis is unreachable."""
    taken = await repository.take_outbox(session, limit, repository.EVENTS_PER_ENTRY)
    if taken.entries:
        await publish_fields(redis, stream, [_fields(entry) for entry in taken.entries])
    return Published(taken.rows, sum(entry.events for entry in taken.entries))


async def drain_outbox(sessionmaker: async_sessionmaker[AsyncSession], redis: ArqRedis, stream: str) -> int:
    """Publish every outbox row there is (chunk by chunk, one transaction each); returns how many
    events. A chunk short of RELAY_CHUNK rows took the last: no transaction is spent finding the
    outbox empty after it (under load, a third of the publisher's)."""
    total = 0
    while True:
        async with session_scope(sessionmaker) as session:
            published = await publish_outbox_chunk(session, redis, stream)
        total += published.events
        if published.rows < RELAY_CHUNK:
            return total


async def relay_outbox(ctx: dict[str, Any], *, for_seconds: float = RELAY_LOOP_SECONDS) -> int:
    """arq job (cron, every second): drain the outbox, again and again for `for_seconds`, sleeping
    RELAY_IDLE_SLEEP when it is empty, then trim from the stream what its consumers are done with;
    returns how many events it published."""
    settings: Settings = ctx["settings"]
    deadline = time.monotonic() + for_seconds
    total = 0
    while True:
        total += await drain_outbox(ctx["sessionmaker"], ctx["redis"], settings.events_stream)
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(RELAY_IDLE_SLEEP)
    keep_for = timedelta(hours=settings.events_stream_keep_hours)
    await trim_finished(ctx["redis"], settings.events_stream, keep_for=keep_for)
    return total
