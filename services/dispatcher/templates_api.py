"""HTTP API of the dispatcher's content: templates (with the alimtalk review and a preview), sender
profiles and the suppression list. Every route takes a secret key and works in its workspace only."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response, status

from services.dispatcher import senders, suppressions, templates
from services.dispatcher.content_schemas import (
    FallbackOut,
    PreviewIn,
    PreviewOut,
    ReviewAction,
    SenderProfileCreate,
    SenderProfileList,
    SenderProfileOut,
    SenderProfileUpdate,
    SuppressionChannel,
    SuppressionCreate,
    SuppressionList,
    SuppressionOut,
    TemplateChannel,
    TemplateCreate,
    TemplateList,
    TemplateOut,
    TemplateUpdate,
    template_examples,
)
from services.dispatcher.sizing import ContentError
from shared.auth import SecretKeyWorkspace
from shared.dependencies import ClockDep, SessionDep
from shared.errors import FieldError, NotFound, ValidationFailed, problem_responses

templates_router = APIRouter(prefix="/v1/templates", tags=["templates"])
senders_router = APIRouter(prefix="/v1/sender-profiles", tags=["sender-profiles"])
suppressions_router = APIRouter(prefix="/v1/suppressions", tags=["suppressions"])
routers = [templates_router, senders_router, suppressions_router]

OPENAPI_TAGS = [
    {"name": "templates", "description": "Message templates (Liquid), Kakao review state, previews"},
    {
        "name": "sender-profiles",
        "description": "Store name, registered sender numbers, Kakao key, 080 number",
    },
    {"name": "suppressions", "description": "Opt-outs and addresses never to send to"},
]


def _template_fields(body: TemplateCreate | TemplateUpdate, fields: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in fields:
        if name == "buttons":
            buttons = body.buttons or []
            out["buttons"] = [b.model_dump(exclude_none=True) for b in buttons]
        else:
            out[name] = getattr(body, name)
    return out


# --- templates -----------------------------------------------------------------------------------


def _refuse_nulls(fields: dict[str, Any], names: tuple[str, ...]) -> None:
    """A PATCH may leave these out, but not set them to null."""
    for name in names:
        if name in fields and fields[name] is None:
            raise ValidationFailed(
                f"{name} cannot be null",
                errors=[FieldError(field=f"body.{name}", message="cannot be null", type="null")],
            )


@templates_router.post(
    "",
    operation_id="templates_create",
    response_model=TemplateOut,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 409, 422),
    summary="Save a template (checked now: syntax, known variables, EUC-KR text)",
)
async def templates_create(
    body: Annotated[TemplateCreate, Body(openapi_examples=template_examples())],
    workspace: SecretKeyWorkspace,
    session: SessionDep,
    clock: ClockDep,
) -> TemplateOut:
    fields = _template_fields(body, set(TemplateCreate.model_fields))
    template = await templates.create_template(session, workspace.id, clock.now(), fields)
    return TemplateOut.model_validate(template)


@templates_router.get(
    "",
    operation_id="templates_list",
    response_model=TemplateList,
    responses=problem_responses(401, 422),
    summary="The workspace's templates, oldest first",
)
async def templates_list(
    workspace: SecretKeyWorkspace,
    session: SessionDep,
    channel: Annotated[TemplateChannel | None, Query()] = None,
) -> TemplateList:
    items = await templates.list_templates(session, workspace.id, channel)
    return TemplateList(items=[TemplateOut.model_validate(t) for t in items])


@templates_router.get(
    "/{template_id}",
    operation_id="templates_get",
    response_model=TemplateOut,
    responses=problem_responses(401, 404, 422),
    summary="One template",
)
async def templates_get(
    template_id: uuid.UUID, workspace: SecretKeyWorkspace, session: SessionDep
) -> TemplateOut:
    return TemplateOut.model_validate(await templates.get_template(session, workspace.id, template_id))


@templates_router.patch(
    "/{template_id}",
    operation_id="templates_update",
    response_model=TemplateOut,
    responses=problem_responses(401, 404, 409, 422),
    summary="Change a template (an alimtalk template goes back to `registered` for a new review)",
)
async def templates_update(
    template_id: uuid.UUID,
    body: TemplateUpdate,
    workspace: SecretKeyWorkspace,
    session: SessionDep,
    clock: ClockDep,
) -> TemplateOut:
    fields = _template_fields(body, body.model_fields_set)
    _refuse_nulls(fields, ("name", "body", "is_ad"))
    template = await templates.update_template(session, workspace.id, template_id, clock.now(), fields)
    return TemplateOut.model_validate(template)


@templates_router.delete(
    "/{template_id}",
    operation_id="templates_delete",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(401, 404, 422),
    summary="Delete a template",
)
async def templates_delete(
    template_id: uuid.UUID, workspace: SecretKeyWorkspace, session: SessionDep
) -> Response:
    await templates.delete_template(session, workspace.id, template_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@templates_router.post(
    "/{template_id}/review",
    operation_id="templates_review",
    response_model=TemplateOut,
    responses=problem_responses(401, 404, 409, 422),
    summary="Record a step of Kakao's alimtalk review: submit, approve, reject (with the reason)",
    description=(
        "In production Kakao decides through the provider (template API and its webhook), and the "
        "provider sync records approve / reject here; an operator may record them by hand. "
        "registered → under_review → approved | rejected; a rejected template may be resubmitted."
    ),
)
async def templates_review(
    template_id: uuid.UUID,
    body: Annotated[
        ReviewAction,
        Body(
            openapi_examples={
                "submit": {"summary": "검수 요청", "value": {"action": "submit"}},
                "approve": {"summary": "승인", "value": {"action": "approve"}},
                "reject": {"summary": "반려", "value": {"action": "reject", "reason": "광고성 문구 포함"}},
            }
        ),
    ],
    workspace: SecretKeyWorkspace,
    session: SessionDep,
    clock: ClockDep,
) -> TemplateOut:
    template = await templates.review_template(
        session, workspace.id, template_id, clock.now(), body.action, body.reason
    )
    return TemplateOut.model_validate(template)


@templates_router.post(
    "/{template_id}/preview",
    operation_id="templates_preview",
    response_model=PreviewOut,
    responses=problem_responses(401, 404, 422),
    summary="Render a template as it would go out: final channel, ad form, EUC-KR bytes, fallback",
)
async def templates_preview(
    template_id: uuid.UUID,
    body: PreviewIn,
    workspace: SecretKeyWorkspace,
    session: SessionDep,
) -> PreviewOut:
    try:
        preview = await templates.preview_template(
            session,
            workspace.id,
            template_id,
            timezone=workspace.timezone,
            values=body.variables,
            sender_profile_id=body.sender_profile_id,
        )
    except ContentError as exc:
        field = f"body.variables.{exc.field}" if exc.code in ("missing_variable", "bad_variable") else "body"
        raise ValidationFailed(
            exc.message, errors=[FieldError(field=field, message=exc.message, type=exc.code)]
        ) from exc
    prepared = preview.prepared
    content, fallback = prepared.content, prepared.fallback
    template = await templates.get_template(session, workspace.id, template_id)
    return PreviewOut(
        channel=content.channel.value,
        is_ad=content.is_ad,
        subject=content.subject,
        body=content.body,
        body_bytes=content.body_bytes,
        subject_bytes=content.subject_bytes,
        image_url=content.image_url,
        buttons=prepared.rendered.buttons(template.buttons),
        template_parameters=dict(prepared.rendered.parameters),
        fallback=(
            FallbackOut(
                channel=fallback.channel.value,
                body=fallback.body,
                subject=fallback.subject,
                body_bytes=fallback.body_bytes,
            )
            if fallback
            else None
        ),
        warnings=preview.warnings,
    )


# --- sender profiles -----------------------------------------------------------------------------


def _sender_fields(body: SenderProfileCreate | SenderProfileUpdate, fields: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in fields:
        value = getattr(body, name)
        if name == "sender_numbers" and value is not None:
            value = [n.model_dump() for n in value]
        out[name] = value
    return out


@senders_router.post(
    "",
    operation_id="sender_profiles_create",
    response_model=SenderProfileOut,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 409, 422),
    summary="Add a sender profile (the workspace's first one becomes its default)",
)
async def sender_profiles_create(
    body: Annotated[
        SenderProfileCreate,
        Body(
            openapi_examples={
                "store": {
                    "summary": "기본 발신 프로필",
                    "value": {
                        "name": "기본",
                        "store_name": "다시 스토어",
                        "sender_numbers": [{"number": "02-1234-5678", "verified": True}],
                        "opt_out_number": "080-123-4567",
                        "opt_out_verified": True,
                        "kakao_sender_key": "a1b2c3d4e5",
                        "kakao_channel_id": "@dasi",
                        "kakao_ad_cutoff": "20:00",
                    },
                }
            }
        ),
    ],
    workspace: SecretKeyWorkspace,
    session: SessionDep,
    clock: ClockDep,
) -> SenderProfileOut:
    fields = _sender_fields(body, set(body.model_fields_set) | {"name", "store_name"})
    profile = await senders.create_sender_profile(session, workspace.id, clock.now(), fields)
    return SenderProfileOut.model_validate(profile)


@senders_router.get(
    "",
    operation_id="sender_profiles_list",
    response_model=SenderProfileList,
    responses=problem_responses(401),
    summary="The workspace's sender profiles",
)
async def sender_profiles_list(workspace: SecretKeyWorkspace, session: SessionDep) -> SenderProfileList:
    items = await senders.list_sender_profiles(session, workspace.id)
    return SenderProfileList(items=[SenderProfileOut.model_validate(p) for p in items])


@senders_router.get(
    "/{profile_id}",
    operation_id="sender_profiles_get",
    response_model=SenderProfileOut,
    responses=problem_responses(401, 404, 422),
    summary="One sender profile",
)
async def sender_profiles_get(
    profile_id: uuid.UUID, workspace: SecretKeyWorkspace, session: SessionDep
) -> SenderProfileOut:
    return SenderProfileOut.model_validate(
        await senders.get_sender_profile(session, workspace.id, profile_id)
    )


@senders_router.patch(
    "/{profile_id}",
    operation_id="sender_profiles_update",
    response_model=SenderProfileOut,
    responses=problem_responses(401, 404, 409, 422),
    summary="Change a sender profile",
)
async def sender_profiles_update(
    profile_id: uuid.UUID,
    body: SenderProfileUpdate,
    workspace: SecretKeyWorkspace,
    session: SessionDep,
    clock: ClockDep,
) -> SenderProfileOut:
    fields = _sender_fields(body, set(body.model_fields_set))
    _refuse_nulls(
        fields,
        (
            "name",
            "store_name",
            "is_default",
            "opt_out_verified",
            "email_verified",
            "sender_numbers",
        ),
    )
    profile = await senders.update_sender_profile(session, workspace.id, profile_id, clock.now(), fields)
    return SenderProfileOut.model_validate(profile)


@senders_router.delete(
    "/{profile_id}",
    operation_id="sender_profiles_delete",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(401, 404, 422),
    summary="Delete a sender profile",
)
async def sender_profiles_delete(
    profile_id: uuid.UUID, workspace: SecretKeyWorkspace, session: SessionDep
) -> Response:
    await senders.delete_sender_profile(session, workspace.id, profile_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- suppressions --------------------------------------------------------------------------------


@suppressions_router.get(
    "",
    operation_id="suppressions_list",
    response_model=SuppressionList,
    responses=problem_responses(401, 422),
    summary="Suppressed addresses, newest first",
)
async def suppressions_list(
    workspace: SecretKeyWorkspace,
    session: SessionDep,
    channel: Annotated[SuppressionChannel | None, Query()] = None,
    address: Annotated[str | None, Query(max_length=512, description="Find one address")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[datetime | None, Query(description="`next_before` of the previous page")] = None,
) -> SuppressionList:
    rows = await suppressions.list_suppressions(
        session, workspace.id, channel=channel, address=address, limit=limit, before=before
    )
    next_before = rows[-1].created_at if len(rows) == limit else None
    return SuppressionList(items=[SuppressionOut.model_validate(r) for r in rows], next_before=next_before)


@suppressions_router.post(
    "",
    operation_id="suppressions_add",
    response_model=SuppressionOut,
    responses={
        201: {"description": "Added"},
        200: {"description": "Already suppressed"},
        **problem_responses(401, 422),
    },
    status_code=status.HTTP_201_CREATED,
    summary="Suppress an address (idempotent: 200 with the existing entry when it is already there)",
)
async def suppressions_add(
    body: Annotated[
        SuppressionCreate,
        Body(
            openapi_examples={
                "phone": {
                    "summary": "문자 수신거부",
                    "value": {"channel": "sms", "address": "010-1234-5678", "reason": "고객 요청"},
                },
                "email": {
                    "summary": "이메일 수신거부",
                    "value": {"channel": "email", "address": "kim@example.com"},
                },
            }
        ),
    ],
    workspace: SecretKeyWorkspace,
    session: SessionDep,
    clock: ClockDep,
    response: Response,
) -> SuppressionOut:
    entry = suppressions.NewSuppression(
        channel=body.channel,
        address=body.address,
        source=body.source,
        reason=body.reason,
        profile_id=body.profile_id,
    )
    if not suppressions.normalize_address(entry.channel, entry.address):
        raise ValidationFailed(
            "the address is empty once normalized",
            errors=[FieldError(field="body.address", message="not an address", type="value_error")],
        )
    row, created = await suppressions.add_suppression(session, workspace.id, entry, clock.now())
    if not created:
        response.status_code = status.HTTP_200_OK
    return SuppressionOut.model_validate(row)


@suppressions_router.delete(
    "/{suppression_id}",
    operation_id="suppressions_remove",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(401, 404, 422),
    summary="Lift a suppression (only when the person asked to receive messages again)",
)
async def suppressions_remove(
    suppression_id: uuid.UUID, workspace: SecretKeyWorkspace, session: SessionDep
) -> Response:
    if not await suppressions.remove_suppression(session, workspace.id, suppression_id):
        raise NotFound("no such suppression")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
