"""SQL of the segmenter: saved segments, and running compiled segment queries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, cast, delete, func, literal, select
from sqlalchemy.dialects.postgresql import JSONPATH
from sqlalchemy.ext.asyncio import AsyncSession

from services.segmenter.models import Segment

# a saved segment's definition refers to `$id` somewhere in its tree
_REFERS_TO = '$.** ? (@.type == "segment" && @.segment_id == $id)'


async def get_segment(
    session: AsyncSession, workspace_id: uuid.UUID, segment_id: uuid.UUID
) -> Segment | None:
    return await session.scalar(
        select(Segment).where(Segment.workspace_id == workspace_id, Segment.id == segment_id)
    )


async def list_segments(session: AsyncSession, workspace_id: uuid.UUID) -> list[Segment]:
    rows = await session.scalars(
        select(Segment).where(Segment.workspace_id == workspace_id).order_by(Segment.created_at, Segment.id)
    )
    return list(rows)


async def name_taken(
    session: AsyncSession, workspace_id: uuid.UUID, name: str, other_than: uuid.UUID | None = None
) -> bool:
    query = select(Segment.id).where(Segment.workspace_id == workspace_id, Segment.name == name)
    if other_than is not None:
        query = query.where(Segment.id != other_than)
    return (await session.scalar(query.limit(1))) is not None


async def add_segment(session: AsyncSession, segment: Segment) -> Segment:
    session.add(segment)
    await session.flush()
    return segment


async def delete_segment(session: AsyncSession, workspace_id: uuid.UUID, segment_id: uuid.UUID) -> None:
    await session.execute(
        delete(Segment).where(Segment.workspace_id == workspace_id, Segment.id == segment_id)
    )


async def names_referring_to(
    session: AsyncSession, workspace_id: uuid.UUID, segment_id: uuid.UUID
) -> list[str]:
    """Names of the workspace's saved segments whose definitions use segment `segment_id`."""
    refers = func.jsonb_path_exists(
        Segment.definition,
        cast(literal(_REFERS_TO), JSONPATH),
        func.jsonb_build_object("id", str(segment_id)),
    )
    rows = await session.scalars(
        select(Segment.name).where(Segment.workspace_id == workspace_id, refers).order_by(Segment.name)
    )
    return list(rows)


async def count_of(session: AsyncSession, query: Select[Any]) -> int:
    return int(await session.scalar(query) or 0)


async def rows_of(session: AsyncSession, query: Select[Any]) -> Sequence[Any]:
    return (await session.execute(query)).all()
