"""Live re-evaluation: the segmenter reads `dasi:events` in its consumer group and, per workspace,
re-evaluates the materialized segments for just the profiles whose events arrived, so a shopper who
adds to cart enters the cart segment within seconds instead of at the next scheduled refresh.

Delivery is at least once (shared/streams.py): entries are acked only after the transaction that
applied their changes committed; a repeat is harmless because re-evaluating a profile whose
membership is already right changes nothing (the diff is empty).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.segmenter.materialize import reevaluate_profiles
from shared.clock import Clock
from shared.contracts import recorded_events
from shared.db import session_scope
from shared.streams import StreamEntry, consume_once, ensure_group

log = structlog.get_logger(__name__)

GROUP = "segmenter"
BATCH = 100  # stream entries per round (ingest writes up to 500 events an entry)
LOOP_SECONDS = 0.95  # how long one run of the job keeps reading; the cron starts one a second
BLOCK_MS = 200
IDLE_SLEEP = 0.05  # seconds between rounds that found nothing


def consumer_name() -> str:
    return f"segmenter-{socket.gethostname()}-{os.getpid()}"


def profiles_by_workspace(entries: Sequence[StreamEntry]) -> dict[uuid.UUID, set[uuid.UUID]]:
    found: dict[uuid.UUID, set[uuid.UUID]] = {}
    for entry in entries:
        for event in recorded_events(entry.message):
            found.setdefault(event.workspace_id, set()).add(event.profile_id)
    return found


async def apply_entries(
    sessionmaker: async_sessionmaker[AsyncSession], clock: Clock, entries: Sequence[StreamEntry]
) -> None:
    """One transaction per workspace of the batch; raises (so nothing is acked) if one fails."""
    for workspace_id, profile_ids in profiles_by_workspace(entries).items():
        async with session_scope(sessionmaker) as session:
            result = await reevaluate_profiles(session, workspace_id, sorted(profile_ids), clock.now())
        if result.entered or result.exited:
            log.info(
                "segments_reevaluated",
                workspace_id=str(workspace_id),
                profiles=len(profile_ids),
                segments=result.segments,
                entered=result.entered,
                exited=result.exited,
            )


async def consume_round(
    redis: ArqRedis,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: Clock,
    stream: str,
    *,
    consumer: str | None = None,
    block_ms: int | None = BLOCK_MS,
) -> int:
    """Read one batch of the stream (what dead consumers left first), apply it, ack it; returns how
    many entries it handled."""
    await ensure_group(redis, stream, GROUP)

    async def handle(entries: Sequence[StreamEntry]) -> None:
        await apply_entries(sessionmaker, clock, entries)

    return await consume_once(
        redis, stream, GROUP, consumer or consumer_name(), handle, count=BATCH, block_ms=block_ms
    )


async def consume_events(ctx: dict[str, Any], *, for_seconds: float = LOOP_SECONDS) -> int:
    """arq job (cron, every second): consume the events stream for `for_seconds`; returns how many
    entries it handled."""
    deadline = time.monotonic() + for_seconds
    total = 0
    while True:
        handled = await consume_round(
            ctx["redis"], ctx["sessionmaker"], ctx["clock"], ctx["settings"].events_stream, block_ms=None
        )
        total += handled
        if time.monotonic() >= deadline:
            return total
        if not handled:
            await asyncio.sleep(IDLE_SLEEP)
