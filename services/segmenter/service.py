"""The segmenter's rules: resolving segments used inside definitions (with cycle detection),
estimating and previewing a definition, and keeping saved segments."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.segmenter import compiler, repository
from services.segmenter.definition import Definition, InCohort, InSegment, conditions_of
from services.segmenter.models import DEFAULT_REFRESH_MINUTES, Segment
from shared.auth import WorkspaceContext
from shared.clock import Clock
from shared.errors import Conflict, FieldError, NotFound, ValidationFailed
from shared.errors import field_path as dotted

MAX_SEGMENT_DEPTH = 8
PREVIEW_TRAITS = ("name", "gender", "region", "birthdate", "member", "grade")

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Estimate:
    count: int
    took_ms: float


@dataclass(frozen=True)
class PreviewProfile:
    id: uuid.UUID
    user_id: str | None
    traits: dict[str, Any]


@dataclass(frozen=True)
class PreviewPage:
    items: list[PreviewProfile]
    next_cursor: uuid.UUID | None


@dataclass
class _Resolution:
    session: AsyncSession
    workspace_id: uuid.UUID
    where: str  # the path of the reference in the caller's input, for errors
    found: dict[uuid.UUID, Definition] = field(default_factory=dict)


def _invalid(where: str, message: str, kind: str) -> ValidationFailed:
    return ValidationFailed(
        f"{where}: {message}", errors=[FieldError(field=where, message=message, type=kind)]
    )


async def _resolve(res: _Resolution, segment_id: uuid.UUID, chain: tuple[uuid.UUID, ...]) -> None:
    if segment_id in chain:
        raise _invalid(res.where, f"segment {segment_id} would contain itself", "segment_cycle")
    if segment_id in res.found:
        return
    if len(chain) >= MAX_SEGMENT_DEPTH:
        raise _invalid(res.where, f"segments nest more than {MAX_SEGMENT_DEPTH} deep", "segment_too_deep")
    segment = await repository.get_segment(res.session, res.workspace_id, segment_id)
    if segment is None:
        raise _invalid(res.where, f"no saved segment {segment_id} in this workspace", "segment_not_found")
    definition = Definition.model_validate(segment.definition)
    for condition, _path in conditions_of(definition):
        if isinstance(condition, InSegment):
            await _resolve(res, condition.segment_id, (*chain, segment_id))
    res.found[segment_id] = definition


async def resolve_segments(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    definition: Definition,
    *,
    at: Path = ("body",),
    own_id: uuid.UUID | None = None,
) -> dict[uuid.UUID, Definition]:
    """Every saved segment `definition` uses, directly or not; 422 at the reference that is unknown,
    belongs to another workspace, or closes a cycle (through `own_id` too, when saving a segment)."""
    found: dict[uuid.UUID, Definition] = {}
    chain = (own_id,) if own_id else ()
    for condition, path in conditions_of(definition):
        if isinstance(condition, InSegment):
            res = _Resolution(session, workspace_id, dotted((*at, *path, "segment_id")), found)
            await _resolve(res, condition.segment_id, chain)
    return found


async def check_cohorts(
    session: AsyncSession, workspace_id: uuid.UUID, definition: Definition, *, at: Path = ("body",)
) -> None:
    """422 at the first `cohort` condition naming no cohort of this workspace."""
    used = [(c, path) for c, path in conditions_of(definition) if isinstance(c, InCohort)]
    if not used:
        return
    known = await repository.existing_cohorts(session, workspace_id, [c.cohort_id for c, _ in used])
    for condition, path in used:
        if condition.cohort_id not in known:
            where = dotted((*at, *path, "cohort_id"))
            raise _invalid(where, f"no cohort {condition.cohort_id} in this workspace", "cohort_not_found")


async def _scope(
    session: AsyncSession, workspace: WorkspaceContext, clock: Clock, definition: Definition, at: Path
) -> compiler.Scope:
    segments = await resolve_segments(session, workspace.id, definition, at=at)
    await check_cohorts(session, workspace.id, definition, at=at)
    return compiler.Scope(workspace.id, workspace.timezone, clock.now(), segments)


async def estimate(
    session: AsyncSession,
    workspace: WorkspaceContext,
    clock: Clock,
    definition: Definition,
    at: Path = ("body",),
) -> Estimate:
    started = time.perf_counter()
    scope = await _scope(session, workspace, clock, definition, at)
    count = await repository.count_of(session, compiler.count_query(definition, scope))
    return Estimate(count, round((time.perf_counter() - started) * 1000, 1))


async def preview(
    session: AsyncSession,
    workspace: WorkspaceContext,
    clock: Clock,
    definition: Definition,
    *,
    limit: int,
    cursor: uuid.UUID | None,
) -> PreviewPage:
    scope = await _scope(session, workspace, clock, definition, ("body",))
    rows = await repository.rows_of(
        session, compiler.page_query(definition, scope, limit=limit + 1, after=cursor)
    )
    items = [
        PreviewProfile(row.id, row.user_id, {k: row.traits[k] for k in PREVIEW_TRAITS if k in row.traits})
        for row in rows[:limit]
    ]
    return PreviewPage(items, items[-1].id if len(rows) > limit else None)


# --- saved segments ---------------------------------------------------------------------------


def _stored(definition: Definition) -> dict[str, Any]:
    return definition.model_dump(mode="json", by_alias=True, exclude_none=True)


async def _require(session: AsyncSession, workspace_id: uuid.UUID, segment_id: uuid.UUID) -> Segment:
    segment = await repository.get_segment(session, workspace_id, segment_id)
    if segment is None:
        raise NotFound(f"No segment {segment_id} in this workspace")
    return segment


async def _require_free_name(
    session: AsyncSession, workspace_id: uuid.UUID, name: str, other_than: uuid.UUID | None = None
) -> None:
    if await repository.name_taken(session, workspace_id, name, other_than):
        raise Conflict(f"A segment named {name!r} exists already")


async def create_segment(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    clock: Clock,
    *,
    name: str,
    description: str | None,
    definition: Definition,
    refresh_every_minutes: int | None = DEFAULT_REFRESH_MINUTES,
) -> Segment:
    await _require_free_name(session, workspace_id, name)
    segment_id = uuid.uuid4()
    await resolve_segments(session, workspace_id, definition, at=("body", "definition"), own_id=segment_id)
    await check_cohorts(session, workspace_id, definition, at=("body", "definition"))
    now = clock.now()
    segment = Segment(
        id=segment_id,
        workspace_id=workspace_id,
        name=name,
        description=description,
        definition=_stored(definition),
        refresh_every_minutes=refresh_every_minutes,
        created_at=now,
        updated_at=now,
    )
    return await repository.add_segment(session, segment)


async def get_segment(session: AsyncSession, workspace_id: uuid.UUID, segment_id: uuid.UUID) -> Segment:
    return await _require(session, workspace_id, segment_id)


async def list_segments(session: AsyncSession, workspace_id: uuid.UUID) -> list[Segment]:
    return await repository.list_segments(session, workspace_id)


async def update_segment(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    clock: Clock,
    segment_id: uuid.UUID,
    changes: dict[str, Any],
) -> Segment:
    """Apply `changes` (any of name, description, definition as a Definition, refresh_every_minutes)."""
    segment = await _require(session, workspace_id, segment_id)
    if "name" in changes:
        await _require_free_name(session, workspace_id, changes["name"], other_than=segment_id)
        segment.name = changes["name"]
    if "description" in changes:
        segment.description = changes["description"]
    if "definition" in changes:
        definition: Definition = changes["definition"]
        await resolve_segments(
            session, workspace_id, definition, at=("body", "definition"), own_id=segment_id
        )
        await check_cohorts(session, workspace_id, definition, at=("body", "definition"))
        if _stored(definition) != segment.definition:
            # its memberships are stale: the next cron tick (or a refresh on demand) recomputes them
            await repository.forget_refresh(session, segment_id)
        segment.definition = _stored(definition)
    if "refresh_every_minutes" in changes:
        segment.refresh_every_minutes = changes["refresh_every_minutes"]
    segment.updated_at = clock.now()
    await session.flush()
    return segment


async def delete_segment(session: AsyncSession, workspace_id: uuid.UUID, segment_id: uuid.UUID) -> None:
    await _require(session, workspace_id, segment_id)
    users = await repository.names_referring_to(session, workspace_id, segment_id)
    if users:
        raise Conflict(f"Segments use this one: {', '.join(users)}; change them first")
    await repository.delete_segment(session, workspace_id, segment_id)


async def estimate_saved(
    session: AsyncSession, workspace: WorkspaceContext, clock: Clock, segment_id: uuid.UUID
) -> Estimate:
    segment = await _require(session, workspace.id, segment_id)
    definition = Definition.model_validate(segment.definition)
    return await estimate(session, workspace, clock, definition, at=("definition",))


# --- materialized memberships (read side) ------------------------------------------------------


@dataclass(frozen=True)
class MembersPage:
    items: list[Any]
    next_cursor: uuid.UUID | None
    refreshed_at: datetime | None


async def members(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    segment_id: uuid.UUID,
    *,
    limit: int,
    after: uuid.UUID | None,
) -> MembersPage:
    await _require(session, workspace_id, segment_id)
    rows = await repository.members_page(session, segment_id, limit=limit + 1, after=after)
    refresh = await repository.get_refresh(session, segment_id)
    items = list(rows[:limit])
    return MembersPage(
        items,
        items[-1].profile_id if len(rows) > limit else None,
        refresh.refreshed_at if refresh is not None else None,
    )


async def changes(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    segment_id: uuid.UUID,
    *,
    limit: int,
    after_seq: int | None,
    since: datetime | None,
) -> list[Any]:
    await _require(session, workspace_id, segment_id)
    return list(
        await repository.changes_page(session, segment_id, limit=limit, after_seq=after_seq, since=since)
    )
