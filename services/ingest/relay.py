"""The event outbox: every stored event gets an outbox row in the same transaction. After the commit
the request publishes `EventRecorded` to the events stream and deletes the rows; whatever that
missed (Redis down, process killed) the relay job publishes later. Delivery is at least once;
consumers dedupe by event_id."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ingest import repository
from services.ingest.models import OutboxEvent
from shared.contracts import EventRecorded
from shared.db import after_commit, session_scope
from shared.publisher import publish
from shared.worker import job_session

# the relay leaves fresh rows to the request that wrote them, so the two rarely publish one event twice
RELAY_GRACE = timedelta(seconds=10)
RELAY_BATCH = 500


def _published(events: Sequence[EventRecorded]) -> list[tuple[Any, Any]]:
    return [(e.workspace_id, e.event_id) for e in events]


async def publish_and_clear(
    redis: ArqRedis,
    sessionmaker: async_sessionmaker[AsyncSession],
    stream: str,
    events: Sequence[EventRecorded],
) -> None:
    """XADD the events, then delete their outbox rows (only once XADD succeeded)."""
    await publish(redis, stream, events)
    async with session_scope(sessionmaker) as session:
        await repository.delete_outbox(session, _published(events))


def publish_after_commit(
    session: AsyncSession,
    redis: ArqRedis,
    sessionmaker: async_sessionmaker[AsyncSession],
    stream: str,
    events: Sequence[EventRecorded],
) -> None:
    """Like shared.publisher.publish_after_commit, and it also clears the outbox rows it published.
    If Redis is down the failure is logged, the answer stays 2xx, and the relay catches up."""
    if events:
        after_commit(session, lambda: publish_and_clear(redis, sessionmaker, stream, list(events)))


def _contract(row: OutboxEvent) -> EventRecorded:
    return EventRecorded(
        workspace_id=row.workspace_id,
        event_id=row.event_id,
        profile_id=row.profile_id,
        type=row.type,
        name=row.name,
        occurred_at=row.occurred_at,
    )


async def relay_once(session: AsyncSession, redis: ArqRedis, stream: str, *, created_before: Any) -> int:
    """Publish up to RELAY_BATCH outbox rows older than `created_before` and delete them; raises
    (so the transaction rolls back and the rows stay) when Redis is unreachable."""
    rows = await repository.claim_outbox(session, created_before, RELAY_BATCH)
    if rows:
        events = [_contract(row) for row in rows]
        await publish(redis, stream, events)
        await repository.delete_outbox(session, _published(events))
    return len(rows)


async def relay_outbox(ctx: dict[str, Any]) -> int:
    """arq job (cron): publish every outbox row the requests left behind; returns how many."""
    created_before = ctx["clock"].now() - RELAY_GRACE
    total = 0
    while True:
        async with job_session(ctx) as session:
            count = await relay_once(
                session, ctx["redis"], ctx["settings"].events_stream, created_before=created_before
            )
        total += count
        if count < RELAY_BATCH:
            return total
