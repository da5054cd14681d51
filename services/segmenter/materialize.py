"""Materialized memberships: a saved segment's members kept as rows, with entered / exited history,
so the scheduler can ask "who is in it now" (`segmenter.memberships`) and "who entered since T"
(`segmenter.membership_changes`, whose `seq` only grows and serves as a cursor).

- A full refresh computes the segment's current set with its compiled query and applies the
  difference in ONE SQL statement (insert newcomers + 'entered' rows, delete leavers + 'exited'
  rows), in one transaction, under a per-segment advisory lock. The worker refreshes each segment
  whose schedule (`refresh_every_minutes`) is due; `POST /v1/segments/{id}/refresh` does it now.
- Live re-evaluation runs the same statement restricted to a few profiles (those whose events just
  arrived, services/segmenter/live.py) for every segment of the workspace that has been refreshed
  once. Time-relative conditions ("within 7 days") also let people leave without any event of theirs;
  only the scheduled full refresh notices those, so a segment's schedule bounds how late such an
  exit is recorded.
- Segments inside segments are compiled inline (services/segmenter/compiler.py), so no refresh order
  between segments is needed: each refresh evaluates its own definition in full.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.segmenter import compiler, repository, service
from services.segmenter.definition import Definition
from services.segmenter.models import Segment, SegmentRefresh
from shared.clock import Clock
from shared.db import session_scope
from shared.workspaces import get_workspace

log = structlog.get_logger(__name__)

ANALYZE_AFTER = 50_000  # rows changed by one refresh after which the memberships' statistics are renewed


@dataclass(frozen=True)
class RefreshResult:
    segment_id: uuid.UUID
    entered: int
    exited: int
    count: int
    took_ms: float
    refreshed_at: datetime


async def _scope(
    session: AsyncSession, workspace_id: uuid.UUID, definition: Definition, timezone: str, now: datetime
) -> compiler.Scope:
    segments = await service.resolve_segments(session, workspace_id, definition, at=("definition",))
    return compiler.Scope(workspace_id, timezone, now, segments)


async def refresh_segment(
    session: AsyncSession, segment: Segment, timezone: str, now: datetime
) -> RefreshResult:
    """Bring the segment's memberships up to date (full refresh); flushes, the caller commits."""
    started = time.perf_counter()
    definition = Definition.model_validate(segment.definition)
    scope = await _scope(session, segment.workspace_id, definition, timezone, now)
    await repository.lock_segment(session, segment.id)
    diff = await repository.apply_diff(
        session, segment.workspace_id, segment.id, compiler.member_ids_query(definition, scope), now
    )
    if diff.entered + diff.exited >= ANALYZE_AFTER:
        await repository.analyze_memberships(session)
    count = await repository.member_count(session, segment.id)
    took_ms = round((time.perf_counter() - started) * 1000, 1)
    await repository.save_refresh(
        session,
        SegmentRefresh(
            segment_id=segment.id,
            workspace_id=segment.workspace_id,
            refreshed_at=now,
            member_count=count,
            entered=diff.entered,
            exited=diff.exited,
            took_ms=took_ms,
        ),
    )
    log.info(
        "segment_refreshed",
        segment_id=str(segment.id),
        workspace_id=str(segment.workspace_id),
        entered=diff.entered,
        exited=diff.exited,
        count=count,
        took_ms=took_ms,
    )
    return RefreshResult(segment.id, diff.entered, diff.exited, count, took_ms, now)


async def refresh_now(
    session: AsyncSession, workspace_id: uuid.UUID, timezone: str, clock: Clock, segment_id: uuid.UUID
) -> RefreshResult:
    segment = await service.get_segment(session, workspace_id, segment_id)  # 404 across workspaces
    return await refresh_segment(session, segment, timezone, clock.now())


async def refresh_due(
    sessionmaker: async_sessionmaker[AsyncSession], clock: Clock, *, limit: int = 100
) -> int:
    """Refresh every segment whose schedule is due (one transaction each); returns how many."""
    async with session_scope(sessionmaker) as session:
        due = await repository.due_segments(session, clock.now(), limit=limit)
    done = 0
    for workspace_id, segment_id in due:
        try:
            async with session_scope(sessionmaker) as session:
                segment = await repository.get_segment(session, workspace_id, segment_id)
                workspace = await get_workspace(session, workspace_id)
                if segment is None or workspace is None:
                    continue
                await refresh_segment(session, segment, workspace.timezone, clock.now())
            done += 1
        except Exception:
            # one broken segment must not starve the others; it stays due and is retried next tick
            log.exception(
                "segment_refresh_failed", segment_id=str(segment_id), workspace_id=str(workspace_id)
            )
    return done


@dataclass(frozen=True)
class LiveResult:
    segments: int
    entered: int
    exited: int


@dataclass(frozen=True)
class LiveStatement:
    """A segment's diff statement for a few profiles, built once: run again with other profiles
    (`only`) at another time (its clock-following parameters, `relative`)."""

    statement: Select[int, int]
    relative: tuple[str, ...]
    nested: str | None  # the definitions of the segments it uses, when it uses any (part of the key)


LIVE_STATEMENTS = 1024  # segments whose live statement is kept (least recently used ones go)
_live: OrderedDict[tuple[uuid.UUID, uuid.UUID, str, str], LiveStatement] = OrderedDict()


def forget_live_statements() -> None:
    """Drop the kept live statements (benchmarks measure their first use)."""
    _live.clear()


def _fingerprint(segments: Mapping[uuid.UUID, Definition]) -> str:
    return json.dumps(
        {str(k): v.model_dump(mode="json", by_alias=True, exclude_none=True) for k, v in segments.items()},
        sort_keys=True,
    )


async def live_statement(
    session: AsyncSession, workspace_id: uuid.UUID, segment: repository.LiveSegment, now: datetime
) -> LiveStatement:
    """The segment's live statement, kept per (segment, workspace, timezone, definition and the
    definitions of the segments it uses): building it costs 0.5-2 ms of Python a segment, running
    it again costs nothing to build (SQLAlchemy's cache key is memoized on the statement object and
    its compiled form is in the engine's cache)."""
    key = (segment.id, workspace_id, segment.timezone, json.dumps(segment.definition, sort_keys=True))
    kept = _live.get(key)
    if kept is not None and kept.nested is None:
        _live.move_to_end(key)
        return kept
    definition = Definition.model_validate(segment.definition)
    scope = await _scope(session, workspace_id, definition, segment.timezone, now)
    nested = _fingerprint(scope.segments) if scope.segments else None
    if kept is not None and kept.nested == nested:
        _live.move_to_end(key)
        return kept
    placeholder = [uuid.UUID(int=0)]
    current = compiler.member_ids_query(definition, scope, placeholder)
    statement = repository.diff_statement(workspace_id, segment.id, current, now, only=placeholder)
    relative = tuple(k for k in statement.compile().params if compiler.is_relative(k))
    made = LiveStatement(statement, relative, nested)
    _live[key] = made
    while len(_live) > LIVE_STATEMENTS:
        _live.popitem(last=False)
    return made


async def reevaluate_segment(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    segment: repository.LiveSegment,
    profile_ids: Sequence[uuid.UUID],
    now: datetime,
) -> repository.Diff:
    """Re-evaluate one materialized segment for just `profile_ids` (sorted, distinct); the caller
    holds the segment's lock (`repository.lock_materialized_segments`)."""
    live = await live_statement(session, workspace_id, segment, now)
    params = compiler.relative_values(live.relative, now, segment.timezone)
    params[compiler.ONLY] = list(profile_ids)
    return await repository.run_diff(session, live.statement, params)


async def reevaluate_profiles(
    session: AsyncSession, workspace_id: uuid.UUID, profile_ids: Sequence[uuid.UUID], now: datetime
) -> LiveResult:
    """Re-evaluate the workspace's materialized segments for just `profile_ids` (live)."""
    if not profile_ids:
        return LiveResult(0, 0, 0)
    ids = sorted(set(profile_ids))
    entered = exited = 0
    segments = await repository.lock_materialized_segments(session, workspace_id)
    for segment in segments:
        diff = await reevaluate_segment(session, workspace_id, segment, ids, now)
        entered += diff.entered
        exited += diff.exited
    return LiveResult(len(segments), entered, exited)
