"""HTTP API of segments: estimate and preview a definition, and keep saved segments."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response, status

from services.segmenter import service
from services.segmenter.definition import Definition
from services.segmenter.schemas import (
    EstimateOut,
    PreviewOut,
    PreviewProfileOut,
    SegmentCreate,
    SegmentList,
    SegmentOut,
    SegmentUpdate,
    definition_examples,
    segment_examples,
)
from shared.auth import SecretKeyWorkspace
from shared.dependencies import ClockDep, SessionDep
from shared.errors import problem_responses

router = APIRouter(prefix="/v1/segments", tags=["segments"])

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
        session, workspace.id, clock, name=body.name, description=body.description, definition=body.definition
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
