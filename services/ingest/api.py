"""The tracking routes (Segment HTTP Tracking API): the write key as the HTTP Basic username.

The routes read the body themselves (gzip, size limits, message-by-message validation), so the
request schemas are declared through `openapi_extra` and added to the components by `openapi_schemas`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic.json_schema import models_json_schema

from services.ingest import payload
from services.ingest.drafts import ContractMessage, Message, drafts_of
from services.ingest.group_commit import GroupCommit
from services.ingest.schemas import (
    AliasMessage,
    BatchRequest,
    GroupMessage,
    IdentifyMessage,
    PageMessage,
    ScreenMessage,
    TrackingResult,
    TrackMessage,
)
from shared.auth import WorkspaceContext, WriteKeyWorkspace
from shared.dependencies import Resources, ResourcesDep
from shared.errors import problem_responses

router = APIRouter(tags=["tracking"])

REQUEST_MODELS = (
    BatchRequest,
    TrackMessage,
    IdentifyMessage,
    PageMessage,
    ScreenMessage,
    GroupMessage,
    AliasMessage,
)
ERRORS = problem_responses(400, 401, 413, 415, 422)


def openapi_schemas() -> dict[str, Any]:
    """The request models' JSON schemas, to merge into the OpenAPI components."""
    _, top = models_json_schema(
        [(model, "validation") for model in REQUEST_MODELS], ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = top["$defs"]
    return schemas


def _body(model: type[Any], limit: int) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": f"JSON, or gzip JSON with `Content-Encoding: gzip`; at most {limit // 1024} KB",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }


def _group_commit(request: Request, resources: Resources) -> GroupCommit:
    """The app's group commit, made on first use."""
    state = request.app.state
    group: GroupCommit | None = getattr(state, "group_commit", None)
    if group is None:
        settings = resources.settings
        group = state.group_commit = GroupCommit(
            resources.sessionmaker,
            max_events=settings.ingest_group_max_events,
            max_running=settings.ingest_group_running,
        )
    return group


async def _store(
    request: Request,
    resources: Resources,
    workspace: WorkspaceContext,
    messages: list[Message],
    parsed: payload.ParsedBatch | None = None,
) -> TrackingResult:
    received_at = resources.clock.now()
    drafts = drafts_of(
        messages,
        received_at=received_at,
        batch_sent_at=parsed.sent_at if parsed else None,
        batch_context=parsed.context if parsed else None,
    )
    recorded = await _group_commit(request, resources).record(
        workspace.id, workspace.timezone, drafts, received_at
    )
    return TrackingResult(
        accepted=recorded.accepted,
        duplicates=recorded.duplicates,
        rejected=parsed.rejected if parsed else [],
        errors=parsed.errors if parsed else [],
    )


@router.post(
    "/v1/batch",
    operation_id="tracking_batch",
    summary="Record a batch of messages (up to 500 KB)",
    description=(
        "Each message is validated on its own. Invalid messages are left out and reported in "
        "`rejected` (their indexes) and `errors` (e.g. `body.batch.3.userId`); the valid ones are "
        "stored and the answer is 200. Only when no message is valid is the answer 422. "
        "A messageId seen before is accepted and ignored."
    ),
    response_model=TrackingResult,
    responses=ERRORS,
    openapi_extra=_body(BatchRequest, payload.BATCH_LIMIT),
)
async def batch(request: Request, workspace: WriteKeyWorkspace, resources: ResourcesDep) -> TrackingResult:
    parsed = payload.parse_batch(await payload.read_json(request, payload.BATCH_LIMIT))
    if parsed.errors and not parsed.messages:
        payload.raise_invalid(parsed.errors)
    return await _store(request, resources, workspace, parsed.messages, parsed)


async def _single(
    model: type[ContractMessage], request: Request, workspace: WorkspaceContext, resources: Resources
) -> TrackingResult:
    body = await payload.read_json(request, payload.MESSAGE_LIMIT)
    message = payload.validate_message(body, model, ("body",))
    if isinstance(message, list):
        payload.raise_invalid(message)
    return await _store(request, resources, workspace, [message])


def _single_route(path: str, model: type[ContractMessage], summary: str) -> None:
    kind = model.model_fields["type"].default

    async def route(
        request: Request, workspace: WriteKeyWorkspace, resources: ResourcesDep
    ) -> TrackingResult:
        return await _single(model, request, workspace, resources)

    router.add_api_route(
        path,
        route,
        methods=["POST"],
        operation_id=f"tracking_{kind}",
        summary=summary,
        response_model=TrackingResult,
        responses=ERRORS,
        openapi_extra=_body(model, payload.MESSAGE_LIMIT),
    )


_single_route("/v1/track", TrackMessage, "Record what a shopper did (`event`, `properties`)")
_single_route("/v1/identify", IdentifyMessage, "Say who a shopper is and merge their `traits`")
_single_route("/v1/page", PageMessage, "Record a page view")
_single_route("/v1/screen", ScreenMessage, "Record an app screen view")
_single_route("/v1/group", GroupMessage, "Put a shopper in a group (`groupId`, `traits`)")
_single_route("/v1/alias", AliasMessage, "Say `previousId` and `userId` are one shopper")
