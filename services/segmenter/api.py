"""HTTP API of segments: estimate and preview a definition, keep saved segments, and read their
materialized memberships (refresh on demand, members now, changes since a time or cursor)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response, status

from services.segmenter import materialize, service
from services.segmenter.definition import Definition
from services.segmenter.schemas import (
    ChangeOut,
    ChangesOut,
    EstimateOut,
    MemberOut,
    MembersOut,
    PreviewOut,
    PreviewProfileOut,
    RefreshOut,
    SegmentCreate,
    SegmentList,
    SegmentOut,
    SegmentUpdate,
    definition_examples,
    segment_examples,
)
from shared.auth import SecretKeyWorkspace
from shared.dependencies import ClockDep, SessionDep
from shared.errors import FieldError, ValidationFailed, problem_responses

router = APIRouter(prefix="/v1/segments", tags=["segments"])

MEMBERSHIP_NOTE = """Memberships are kept by a full refresh on the segment's schedule
(`refresh_every_minutes`, or `POST /v1/segments/{id}/refresh`) and, between refreshes, by live
re-evaluation of the shoppers whose events arrive (seconds after the event). Conditions on time alone
("within 7 days", "today") also make people leave without any event of theirs: those exits are
recorded by the next scheduled refresh."""


DefinitionBody = Annotated[Definition, Body(openapi_examples=definition_examples())]


def _estimate_out(estimate: service.Estimate) -> EstimateOut:
    return EstimateOut(count=estimate.count, took_ms=estimate.took_ms)


@router.post(
    "/estimate",
    operation_id="segments_estimate",
    response_model=EstimateOut,
    responses=problem_responses(401, 422),
    summary="Count the profiles a definition matches now (예상 규모)",
)
async def segments_estimate(
    definition: DefinitionBody, workspace: SecretKeyWorkspace, session: SessionDep, clock: ClockDep
) -> EstimateOut:
    return _estimate_out(await service.estimate(session, workspace, clock, definition))


@router.post(
    "/preview",
    operation_id="segments_preview",
    response_model=PreviewOut,
    responses=problem_responses(401, 422),
    summary="A page of the profiles a definition matches, in id order",
)
async def segments_preview(
    definition: DefinitionBody,
    workspace: SecretKeyWorkspace,
    session: SessionDep,
    clock: ClockDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[uuid.UUID | None, Query(description="`next_cursor` of the previous page")] = None,
) -> PreviewOut:
    page = await service.preview(session, workspace, clock, definition, limit=limit, cursor=cursor)
    items = [PreviewProfileOut(id=p.id, user_id=p.user_id, traits=p.traits) for p in page.items]
    return PreviewOut(items=items, next_cursor=page.next_cursor)


@router.post(
    "",
    operation_id="segments_create",
    response_model_exclude_none=True,
    response_model=SegmentOut,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 409, 422),
    summary="Save a segment",
)
async def segments_create(
    body: Annotated[SegmentCreate, Body(openapi_examples=segment_examples())],
    workspace: SecretKeyWorkspace,
    session: SessionDep,
    clock: ClockDep,
) -> SegmentOut:
    segment = await service.create_segment(
        session,
        workspace.id,
        clock,
        name=body.name,
        description=body.description,
        definition=body.definition,
        refresh_every_minutes=body.refresh_every_minutes,
    )
    return SegmentOut.model_validate(segment)


@router.get(
    "",
    operation_id="segments_list",
    response_model_exclude_none=True,
    response_model=SegmentList,
    responses=problem_responses(401),
    summary="The workspace's saved segments, oldest first",
)
async def segments_list(workspace: SecretKeyWorkspace, session: SessionDep) -> SegmentList:
    segments = await service.list_segments(session, workspace.id)
    return SegmentList(items=[SegmentOut.model_validate(s) for s in segments])


@router.get(
    "/{segment_id}",
    operation_id="segments_get",
    response_model_exclude_none=True,
    response_model=SegmentOut,
    responses=problem_responses(401, 404, 422),
    summary="One saved segment",
)
async def segments_get(
    segment_id: uuid.UUID, workspace: SecretKeyWorkspace, session: SessionDep
) -> SegmentOut:
    return SegmentOut.model_validate(await service.get_segment(session, workspace.id, segment_id))


@router.patch(
    "/{segment_id}",
    operation_id="segments_update",
    response_model_exclude_none=True,
    response_model=SegmentOut,
    responses=problem_responses(401, 404, 409, 422),
    summary="Change a saved segment's name, description or definition",
)
async def segments_update(
    segment_id: uuid.UUID,
    body: SegmentUpdate,
    workspace: SecretKeyWorkspace,
    session: SessionDep,
    clock: ClockDep,
) -> SegmentOut:
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    segment = await service.update_segment(session, workspace.id, clock, segment_id, changes)
    return SegmentOut.model_validate(segment)


@router.delete(
    "/{segment_id}",
    operation_id="segments_delete",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(401, 404, 409, 422),
    summary="Delete a saved segment (409 while another segment uses it)",
)
async def segments_delete(
    segment_id: uuid.UUID, workspace: SecretKeyWorkspace, session: SessionDep
) -> Response:
    await service.delete_segment(session, workspace.id, segment_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{segment_id}/estimate",
    operation_id="segments_estimate_saved",
    response_model=EstimateOut,
    responses=problem_responses(401, 404, 422),
    summary="Count the profiles a saved segment matches now",
)
async def segments_estimate_saved(
    segment_id: uuid.UUID, workspace: SecretKeyWorkspace, session: SessionDep, clock: ClockDep
) -> EstimateOut:
    return _estimate_out(await service.estimate_saved(session, workspace, clock, segment_id))


@router.post(
    "/{segment_id}/refresh",
    operation_id="segments_refresh",
    response_model=RefreshOut,
    responses=problem_responses(401, 404, 422),
    summary="Recompute a saved segment's membership now (entered / exited since the last refresh)",
)
async def segments_refresh(
    segment_id: uuid.UUID, workspace: SecretKeyWorkspace, session: SessionDep, clock: ClockDep
) -> RefreshOut:
    result = await materialize.refresh_now(session, workspace.id, workspace.timezone, clock, segment_id)
    return RefreshOut(
        entered=result.entered,
        exited=result.exited,
        count=result.count,
        took_ms=result.took_ms,
        refreshed_at=result.refreshed_at,
    )


@router.get(
    "/{segment_id}/members",
    operation_id="segments_members",
    response_model=MembersOut,
    responses=problem_responses(401, 404, 422),
    summary="Who is in a saved segment now (as materialized), in profile id order",
    description=MEMBERSHIP_NOTE,
)
async def segments_members(
    segment_id: uuid.UUID,
    workspace: SecretKeyWorkspace,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[uuid.UUID | None, Query(description="`next_cursor` of the previous page")] = None,
) -> MembersOut:
    page = await service.members(session, workspace.id, segment_id, limit=limit, after=cursor)
    return MembersOut(
        items=[
            MemberOut(profile_id=m.profile_id, user_id=m.user_id, entered_at=m.entered_at) for m in page.items
        ],
        next_cursor=page.next_cursor,
        refreshed_at=page.refreshed_at,
    )


def _since(value: str | None) -> tuple[int | None, datetime | None]:
    """`since`: a cursor (the `seq` of a change) or a time with its offset."""
    if value is None:
        return None, None
    if value.isdigit():
        return int(value), None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        message = "give a cursor (`next_cursor`) or a time with its offset, e.g. 2026-11-23T10:00:00+09:00"
        raise ValidationFailed(
            message, errors=[FieldError(field="query.since", message=message, type="value_error")]
        )
    return None, at


@router.get(
    "/{segment_id}/changes",
    operation_id="segments_changes",
    response_model=ChangesOut,
    responses=problem_responses(401, 404, 422),
    summary="Who entered or exited a saved segment since a time or a cursor, oldest first",
    description=MEMBERSHIP_NOTE,
)
async def segments_changes(
    segment_id: uuid.UUID,
    workspace: SecretKeyWorkspace,
    session: SessionDep,
    since: Annotated[
        str | None,
        Query(
            description="A cursor (`next_cursor` of the previous answer) or a time with its offset",
            examples=["2026-11-23T10:00:00+09:00"],
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ChangesOut:
    after_seq, at = _since(since)
    items = await service.changes(
        session, workspace.id, segment_id, limit=limit, after_seq=after_seq, since=at
    )
    return ChangesOut(
        items=[
            ChangeOut(seq=c.seq, profile_id=c.profile_id, user_id=c.user_id, change=c.change, at=c.at)
            for c in items
        ],
        next_cursor=str(items[-1].seq) if items else since if after_seq is not None else None,
    )
