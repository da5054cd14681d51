"""HTTP API of the send pipeline: one-off, transactional and test sends, a message's status and
delivery history, delivery-report webhooks per provider, and the email one-click unsubscribe.

A send is recorded in the request's transaction and handed to the dispatcher worker (arq queue
`dispatch`) once committed; the answer carries the message id and its status at that moment
(`queued`). The same pipeline as campaign sends renders it, applies the policies and falls back.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Body, Header, Request, Response, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.dispatcher import repository as repo
from services.dispatcher.jobs import enqueue_run
from services.dispatcher.message_models import DeliveryAttempt, Message
from services.dispatcher.reports import ReportReceiver, UnknownProvider, WebhookRejected
from services.dispatcher.suppressions import NewSuppression, add_suppressions
from services.dispatcher.wiring import report_receiver
from shared.auth import SecretKeyWorkspace
from shared.contracts import ChannelName, InlineContent, SendRequest
from shared.db import after_commit
from shared.dependencies import ClockDep, RedisDep, ResourcesDep, SessionDep
from shared.errors import (
    BadRequest,
    FieldError,
    NotFound,
    Unauthorized,
    ValidationFailed,
    field_errors_from_pydantic,
    problem_responses,
)

log = structlog.get_logger(__name__)

messages_router = APIRouter(prefix="/v1/messages", tags=["messages"])
webhooks_router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
unsubscribe_router = APIRouter(prefix="/v1/unsubscribe", tags=["unsubscribe"])
routers = [messages_router, webhooks_router, unsubscribe_router]

OPENAPI_TAGS = [
    {
        "name": "messages",
        "description": "Send one message (transactional, one-off, test) and read its history",
    },
    {"name": "webhooks", "description": "Delivery reports from the channel providers (signed)"},
    {"name": "unsubscribe", "description": "Email one-click unsubscribe (RFC 8058)"},
]


class MessageCreate(BaseModel):
    """One message to one recipient: a profile of the workspace, or a direct address (test send)."""

    model_config = ConfigDict(extra="forbid")

    profile_id: uuid.UUID | None = Field(default=None, description="A profile of this workspace")
    to: str | None = Field(
        default=None,
        max_length=320,
        description="A direct address instead: phone digits, push token or email (test sends)",
    )
    channels: list[ChannelName] = Field(
        min_length=1, max_length=4, description="The channel chain, first choice first"
    )
    template_id: uuid.UUID | None = None
    templates: dict[ChannelName, uuid.UUID] = Field(
        default_factory=dict, description="A template per channel where they differ"
    )
    content: InlineContent | None = Field(default=None, description="Liquid text instead of a template")
    variables: dict[str, Any] = Field(default_factory=dict, description="Template variables")
    is_ad: bool = False
    night_policy: Literal["defer", "skip"] = "defer"


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    channel: str
    provider: str
    state: str = Field(description="submitting, pending (awaiting a report) or done")
    outcome: str | None
    code: str | None
    detail: str | None
    resend_status: str | None = Field(description="The provider's own SMS fallback (NHN RSC01-RSC05)")
    provider_fallback: bool
    cost_krw: int
    submitted_at: datetime
    answered_at: datetime | None
    reported_at: datetime | None


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    idempotency_key: str
    kind: str
    status: str = Field(
        description="queued, deferred, sending, sent, delivered, delivered_via_fallback, skipped, failed"
    )
    reason: str | None = Field(description="Why it was skipped, deferred or failed")
    channel: str | None = Field(description="The channel that delivered it (or took it)")
    chain: list[str]
    cost_krw: int
    profile_id: uuid.UUID | None
    campaign_id: uuid.UUID | None
    not_before: datetime | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    attempts: list[AttemptOut] = Field(default_factory=list)


_EXAMPLES = {
    "alimtalk_then_sms": {
        "summary": "주문 알림톡, 안 되면 문자",
        "value": {
            "profile_id": "6f1c2b9e-6a57-4f0e-9a43-2d0f3c8e5b11",
            "channels": ["alimtalk", "sms"],
            "template_id": "0d6e2a4c-5b1f-4c8e-9d7a-3e2f1b0c9a88",
            "variables": {"product.name": "수분크림", "coupon.expires_at": "2026-11-25T23:59:00+09:00"},
        },
    },
    "test_send": {
        "summary": "마케터 휴대폰으로 테스트 발송",
        "value": {
            "to": "01012345678",
            "channels": ["sms"],
            "content": {"body": "[다시 스토어] {{ profile.name }}님, 장바구니에 담긴 상품이 곧 품절돼요!"},
            "is_ad": False,
        },
    },
}


def _message_out(message: Message, attempts: list[DeliveryAttempt]) -> MessageOut:
    out = MessageOut.model_validate(message)
    out.attempts = [AttemptOut.model_validate(a) for a in attempts]
    return out


@messages_router.post(
    "",
    operation_id="messages_send",
    response_model=MessageOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"description": "The Idempotency-Key was seen before: that message"},
        **problem_responses(401, 422),
    },
    summary="Send one message (transactional, one-off or test) through the channel chain",
)
async def messages_send(
    body: Annotated[MessageCreate, Body(openapi_examples=_EXAMPLES)],
    workspace: SecretKeyWorkspace,
    session: SessionDep,
    clock: ClockDep,
    redis: RedisDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=200,
            description="The same key sends once; a repeat answers the first message",
        ),
    ] = None,
) -> MessageOut:
    key = idempotency_key or f"api:{uuid.uuid4().hex}"
    try:
        request = SendRequest(idempotency_key=key, **body.model_dump(exclude_none=True))
    except ValidationError as exc:
        errors = field_errors_from_pydantic([dict(e) for e in exc.errors()], ("body",))
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors) from exc
    now = clock.now()
    existing = await repo.get_message(session, workspace.id, repo.message_id_for(workspace.id, key))
    if existing is not None:
        response.status_code = status.HTTP_200_OK
        return _message_out(existing, await repo.attempts_of(session, existing.id))
    [message_id], _ = await repo.insert_messages(session, workspace.id, [request], now, enqueued_at=now)
    # if the enqueue below is lost, the due-messages cron finds the message after a grace period
    message = await repo.get_message(session, workspace.id, message_id)
    assert message is not None

    async def enqueue() -> None:
        await enqueue_run(redis, [message_id])

    after_commit(session, enqueue)
    return _message_out(message, [])


@messages_router.get(
    "/{message_id}",
    operation_id="messages_get",
    response_model=MessageOut,
    responses=problem_responses(401, 404),
    summary="A message's status, channel, cost and delivery history",
)
async def messages_get(
    message_id: uuid.UUID, workspace: SecretKeyWorkspace, session: SessionDep
) -> MessageOut:
    message = await repo.get_message(session, workspace.id, message_id)
    if message is None:
        raise NotFound("no such message in this workspace")
    return _message_out(message, await repo.attempts_of(session, message.id))


class WebhookAck(BaseModel):
    received: int = Field(description="Reports in the call")
    applied: int = Field(description="Reports applied now (the rest wait for their submission)")


def _receiver(request: Request) -> ReportReceiver:
    """Made on first use per app (tests may set `app.state.report_receiver` to their own)."""
    receiver: ReportReceiver | None = getattr(request.app.state, "report_receiver", None)
    if receiver is None:
        resources = request.app.state.resources
        receiver = request.app.state.report_receiver = report_receiver(
            resources.settings, resources.sessionmaker, resources.clock
        )
    return receiver


@webhooks_router.post(
    "/{provider}",
    operation_id="webhooks_receive",
    response_model=WebhookAck,
    responses=problem_responses(400, 401, 404),
    summary="Delivery reports of one provider (signature checked; repeats and any order are fine)",
)
async def webhooks_receive(
    provider: str,
    request: Request,
    session: SessionDep,
    resources: ResourcesDep,
    redis: RedisDep,
) -> WebhookAck:
    raw = await request.body()
    receiver = _receiver(request)
    try:
        result = await receiver.receive(session, provider, dict(request.headers), raw, resources.clock.now())
    except UnknownProvider as exc:
        raise NotFound(str(exc)) from exc
    except WebhookRejected as exc:
        if exc.signature:
            raise Unauthorized(str(exc)) from exc
        raise BadRequest(str(exc)) from exc
    if result.run_now:

        async def enqueue() -> None:
            await enqueue_run(redis, result.run_now)

        after_commit(session, enqueue)
    return WebhookAck(received=result.received, applied=result.applied)


# --- email one-click unsubscribe (RFC 8058) -------------------------------------------------------


def _token_target(resources: Any, token: str) -> tuple[uuid.UUID, str]:
    from services.dispatcher.composer import read_unsubscribe_token

    found = read_unsubscribe_token(resources.settings.secret_key, token)
    if found is None:
        raise NotFound("this unsubscribe link is not valid")
    return found


async def _unsubscribe(session: Any, resources: Any, token: str) -> None:
    workspace_id, address = _token_target(resources, token)
    entry = NewSuppression("email", address, "email_one_click", reason="List-Unsubscribe")
    await add_suppressions(session, workspace_id, [entry], resources.clock.now())


@unsubscribe_router.post(
    "/{token}",
    operation_id="unsubscribe_one_click",
    status_code=status.HTTP_200_OK,
    responses=problem_responses(404),
    summary="One-click unsubscribe (List-Unsubscribe-Post: List-Unsubscribe=One-Click)",
)
async def unsubscribe_one_click(token: str, session: SessionDep, resources: ResourcesDep) -> dict[str, str]:
    await _unsubscribe(session, resources, token)
    return {"status": "unsubscribed"}


@unsubscribe_router.get(
    "/{token}",
    operation_id="unsubscribe_page",
    response_class=HTMLResponse,
    responses=problem_responses(404),
    summary="The unsubscribe link opened in a browser: unsubscribes and says so",
)
async def unsubscribe_page(token: str, session: SessionDep, resources: ResourcesDep) -> HTMLResponse:
    await _unsubscribe(session, resources, token)
    return HTMLResponse(
        "<html><body><p>수신거부 처리되었습니다. 더 이상 광고 메일을 보내지 않습니다.</p></body></html>"
    )


__all__ = ["FieldError", "routers"]
