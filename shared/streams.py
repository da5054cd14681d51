"""Redis stream consumption with consumer groups: read, ack after the work is done, and reclaim
what a dead consumer left pending. Delivery is at least once; handlers must be idempotent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from arq.connections import ArqRedis
from redis.exceptions import ResponseError

from shared.contracts import Contract, UnknownContract, decode

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class StreamEntry:
    id: str
    message: Contract


Handler = Callable[[Sequence[StreamEntry]], Awaitable[None]]


def dead_letter_stream(stream: str) -> str:
    return f"{stream}:dead"


async def ensure_group(redis: ArqRedis, stream: str, group: str, start_id: str = "0") -> None:
    """Create the group (and the stream) if absent. start_id "0": a new group sees the backlog."""
    try:
        await redis.xgroup_create(stream, group, id=start_id, mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def _decode_or_bury(
    redis: ArqRedis, stream: str, group: str, raw: list[tuple[bytes, dict[bytes, bytes]]]
) -> list[StreamEntry]:
    entries: list[StreamEntry] = []
    for raw_id, fields in raw:
        entry_id = raw_id.decode()
        try:
            entries.append(StreamEntry(entry_id, decode(fields)))
        except (UnknownContract, ValueError) as exc:
            # an entry nobody here can read must not block the group: keep it aside, then ack
            log.error("stream_entry_unreadable", stream=stream, entry_id=entry_id, error=str(exc))
            buried: dict[Any, Any] = {**fields, b"error": str(exc).encode()}
            await redis.xadd(dead_letter_stream(stream), buried)
            await redis.xack(stream, group, entry_id)
    return entries


async def read_new(
    redis: ArqRedis, stream: str, group: str, consumer: str, *, count: int = 500, block_ms: int | None = 1000
) -> list[StreamEntry]:
    response = await redis.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
    raw = response[0][1] if response else []
    return await _decode_or_bury(redis, stream, group, raw)


async def reclaim_stale(
    redis: ArqRedis, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int = 500
) -> list[StreamEntry]:
    """Take over entries another consumer read but did not ack within `min_idle_ms` (it died)."""
    _next, raw, _deleted = await redis.xautoclaim(stream, group, consumer, min_idle_ms, "0-0", count=count)
    return await _decode_or_bury(redis, stream, group, raw)


async def ack(redis: ArqRedis, stream: str, group: str, entries: Sequence[StreamEntry]) -> None:
    if entries:
        await redis.xack(stream, group, *(e.id for e in entries))


async def consume_once(
    redis: ArqRedis,
    stream: str,
    group: str,
    consumer: str,
    handler: Handler,
    *,
    count: int = 500,
    block_ms: int | None = 1000,
    reclaim_idle_ms: int = 60_000,
) -> int:
    """One round: first what dead consumers left, then new entries; ack only after `handler` succeeds.

    If the handler raises, the entries stay pending and come back through reclaim_stale.
    """
    entries = await reclaim_stale(redis, stream, group, consumer, min_idle_ms=reclaim_idle_ms, count=count)
    if not entries:
        entries = await read_new(redis, stream, group, consumer, count=count, block_ms=block_ms)
    if entries:
        await handler(entries)
        await ack(redis, stream, group, entries)
    return len(entries)


def _entry_id(text: str | bytes) -> tuple[int, int]:
    milliseconds, _, sequence = _text(text).partition("-")
    return int(milliseconds), int(sequence or 0)


async def _first_unfinished(redis: ArqRedis, stream: str, group: dict[str, Any]) -> tuple[int, int]:
    """The lowest id the group may still need: its oldest pending entry's, else the id just after
    the last entry it read."""
    pending = await redis.xpending(stream, group["name"])
    if pending["pending"]:
        return _entry_id(pending["min"])
    milliseconds, sequence = _entry_id(group["last-delivered-id"])
    return milliseconds, sequence + 1


async def trim_finished(redis: ArqRedis, stream: str, *, keep_for: timedelta) -> int:
    """Drop the entries every consumer group has acked, and any older than `keep_for` whatever the
    groups say (a consumer away for longer re-reads what it needs from Postgres; a stream nobody
    trims grows by every event). Returns how many entries went. Entry ids are Redis's clock, so
    the age is measured by Redis's TIME."""
    if not await redis.exists(stream):
        return 0
    seconds, microseconds = await redis.time()
    now_ms = seconds * 1000 + microseconds // 1000
    floor = (now_ms - int(keep_for.total_seconds() * 1000), 0)
    groups = [{_text(k): v for k, v in group.items()} for group in await redis.xinfo_groups(stream)]
    if groups:
        finished = min([await _first_unfinished(redis, stream, group) for group in groups])
        floor = max(floor, finished)
    trimmed: int = await redis.xtrim(stream, minid=f"{floor[0]}-{floor[1]}", approximate=False)
    return trimmed


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
