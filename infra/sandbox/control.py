"""The sandbox's own API (`/sandbox/{appkey}/...`): script behaviour, register senders, set webhook
targets and the clock, and inspect what arrived. Everything is per appkey (also the FCM project id
and the email API key), so concurrent tests that each take a fresh appkey never interfere."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from infra.sandbox import email as email_wire
from infra.sandbox import nhn_sms
from infra.sandbox.state import Behaviour, Provider, ProviderBehaviour, WebhookTarget
from infra.sandbox.wire import engine_of, state_of
from shared.errors import NotFound, ValidationFailed, problem_responses

router = APIRouter(prefix="/sandbox/{appkey}", tags=["sandbox"], responses=problem_responses(404, 422))


class RecipientScript(BaseModel):
    behaviour: Behaviour


class Registrations(BaseModel):
    """Replaces each list given; a list left out stays as it is."""

    secret_key: str | None = Field(default=None, description="Require this X-Secret-Key / bearer token")
    sender_numbers: list[str] | None = Field(default=None, examples=[["15990000"]])
    sender_keys: list[str] | None = Field(default=None, examples=[["dasi-sandbox-sender-key"]])
    unsubscribe_numbers: list[str] | None = Field(default=None, examples=[["0801234567"]])
    templates: list[str] | None = Field(default=None, description="Approved alimtalk templates (empty: any)")


class PartitionView(BaseModel):
    appkey: str
    sender_numbers: list[str]
    sender_keys: list[str]
    unsubscribe_numbers: list[str]
    templates: list[str]
    recipients: dict[str, Behaviour]
    providers: dict[Provider, ProviderBehaviour]
    webhooks: dict[Provider, str]
    prices: dict[str, int]
    now: datetime


class ClockSet(BaseModel):
    now: datetime | None = Field(description="This appkey's 'now' (timezone-aware); null: the sandbox clock")


class SubmissionView(BaseModel):
    provider: Provider
    endpoint: str
    at: datetime
    idempotency_key: str | None
    request_id: str | None
    recipients: int
    grouping_keys: list[str | None]
    answer: str = Field(description='"accepted", or the refusal code / HTTP status')


class MessageView(BaseModel):
    provider: Provider
    kind: str
    ref: str = Field(description="{requestId}/{recipientSeq}")
    recipient: str
    grouping_key: str | None
    is_ad: bool
    status: str
    result_code: str | None
    resend_status: str | None
    resend_result_code: str | None
    cost_krw: int
    body: str
    title: str | None
    headers: dict[str, str] = Field(default_factory=dict, description="email: the headers sent")


class WebhookAttemptView(BaseModel):
    provider: Provider
    event: str
    attempt: int
    status: int | None
    items: int
    at: datetime


class Costs(BaseModel):
    total_krw: int
    by_kind: dict[str, int]
    messages: int


class SmsOptOut(BaseModel):
    recipient_no: str = Field(examples=["01012345678"])
    unsubscribe_no: str = Field(default="0801234567")


class EmailUnsubscribe(BaseModel):
    email: str


@router.get("", operation_id="sandbox_partition_get", response_model=PartitionView)
async def partition_get(appkey: str, request: Request) -> PartitionView:
    state = state_of(request)
    p = state.partition(appkey)
    return PartitionView(
        appkey=appkey,
        sender_numbers=sorted(p.sender_numbers),
        sender_keys=sorted(p.sender_keys),
        unsubscribe_numbers=sorted(p.unsubscribe_numbers),
        templates=sorted(p.templates),
        recipients=p.recipients,
        providers=p.providers,
        webhooks={k: v.url for k, v in p.webhooks.items()},
        prices=p.prices,
        now=state.now(p),
    )


@router.delete("", operation_id="sandbox_partition_reset", status_code=204)
async def partition_reset(appkey: str, request: Request) -> Response:
    state_of(request).reset(appkey)
    return Response(status_code=204)


@router.put("/recipients/{recipient}", operation_id="sandbox_recipient_script", status_code=204)
async def recipient_script(
    appkey: str, recipient: str, script: RecipientScript, request: Request
) -> Response:
    partition = state_of(request).partition(appkey)
    partition.recipients[recipient] = script.behaviour
    if script.behaviour is Behaviour.opted_out_080:
        partition.opted_out_080.add(recipient)
    return Response(status_code=204)


@router.put("/providers/{provider}", operation_id="sandbox_provider_script", response_model=ProviderBehaviour)
async def provider_script(appkey: str, provider: Provider, request: Request) -> ProviderBehaviour:
    """Merge the fields given into the provider's behaviour for this appkey."""
    partition = state_of(request).partition(appkey)
    changes: dict[str, Any] = await request.json()
    merged = ProviderBehaviour.model_validate({**partition.providers[provider].model_dump(), **changes})
    partition.providers[provider] = merged
    return merged


@router.put("/webhooks/{provider}", operation_id="sandbox_webhook_set", status_code=204)
async def webhook_set(appkey: str, provider: Provider, target: WebhookTarget, request: Request) -> Response:
    state_of(request).partition(appkey).webhooks[provider] = target
    return Response(status_code=204)


@router.delete("/webhooks/{provider}", operation_id="sandbox_webhook_delete", status_code=204)
async def webhook_delete(appkey: str, provider: Provider, request: Request) -> Response:
    state_of(request).partition(appkey).webhooks.pop(provider, None)
    return Response(status_code=204)


@router.put("/registrations", operation_id="sandbox_registrations_set", status_code=204)
async def registrations_set(appkey: str, registrations: Registrations, request: Request) -> Response:
    partition = state_of(request).partition(appkey)
    if registrations.secret_key is not None:
        partition.secret_key = registrations.secret_key
    if registrations.sender_numbers is not None:
        partition.sender_numbers = set(registrations.sender_numbers)
    if registrations.sender_keys is not None:
        partition.sender_keys = set(registrations.sender_keys)
    if registrations.unsubscribe_numbers is not None:
        partition.unsubscribe_numbers = set(registrations.unsubscribe_numbers)
    if registrations.templates is not None:
        partition.templates = set(registrations.templates)
    return Response(status_code=204)


@router.put("/prices", operation_id="sandbox_prices_set", response_model=dict[str, int])
async def prices_set(appkey: str, prices: dict[str, int], request: Request) -> dict[str, int]:
    partition = state_of(request).partition(appkey)
    partition.prices.update(prices)
    return partition.prices


@router.put("/clock", operation_id="sandbox_clock_set", status_code=204)
async def clock_set(appkey: str, body: ClockSet, request: Request) -> Response:
    if body.now is not None and body.now.tzinfo is None:
        raise ValidationFailed("now must carry a timezone")
    state_of(request).partition(appkey).now_override = body.now
    return Response(status_code=204)


@router.get("/submissions", operation_id="sandbox_submissions_list", response_model=list[SubmissionView])
async def submissions_list(
    appkey: str, request: Request, provider: Provider | None = None
) -> list[SubmissionView]:
    partition = state_of(request).partition(appkey)
    return [
        SubmissionView(
            provider=s.provider,
            endpoint=s.endpoint,
            at=s.at,
            idempotency_key=s.idempotency_key,
            request_id=s.request_id,
            recipients=s.recipients,
            grouping_keys=s.grouping_keys,
            answer=s.answer,
        )
        for s in partition.submissions
        if provider is None or s.provider is provider
    ]


@router.get("/messages", operation_id="sandbox_messages_list", response_model=list[MessageView])
async def messages_list(
    appkey: str,
    request: Request,
    provider: Provider | None = None,
    grouping_key: str | None = None,
    recipient: str | None = None,
) -> list[MessageView]:
    partition = state_of(request).partition(appkey)
    records = (
        partition.by_grouping_key.get(grouping_key, [])
        if grouping_key
        else [r for rs in partition.records.values() for r in rs]
    )
    return [
        MessageView(
            provider=r.provider,
            kind=r.kind,
            ref=r.ref,
            recipient=r.recipient,
            grouping_key=r.grouping_key,
            is_ad=r.is_ad,
            status=r.status,
            result_code=r.result_code,
            resend_status=r.resend_status,
            resend_result_code=r.resend_result_code,
            cost_krw=r.cost_krw,
            body=r.body,
            title=r.title,
            headers={str(k): str(v) for k, v in (r.extra.get("headers") or {}).items()},
        )
        for r in records
        if (provider is None or r.provider is provider) and (recipient is None or r.recipient == recipient)
    ]


@router.get("/costs", operation_id="sandbox_costs_get", response_model=Costs)
async def costs_get(appkey: str, request: Request) -> Costs:
    partition = state_of(request).partition(appkey)
    by_kind: dict[str, int] = {}
    count = 0
    for records in partition.records.values():
        for r in records:
            count += 1
            if r.cost_krw:
                by_kind[r.kind] = by_kind.get(r.kind, 0) + r.cost_krw
    return Costs(total_krw=sum(by_kind.values()), by_kind=by_kind, messages=count)


@router.get("/webhook-log", operation_id="sandbox_webhook_log", response_model=list[WebhookAttemptView])
async def webhook_log(appkey: str, request: Request) -> list[WebhookAttemptView]:
    partition = state_of(request).partition(appkey)
    return [
        WebhookAttemptView(
            provider=a.provider, event=a.event, attempt=a.attempt, status=a.status, items=a.items, at=a.at
        )
        for a in partition.webhook_log
    ]


@router.post("/sms/unsubscribe", operation_id="sandbox_sms_opt_out", status_code=204)
async def sms_opt_out(appkey: str, body: SmsOptOut, request: Request) -> Response:
    """A person called the 080 number: the number goes on the list and an UNSUBSCRIBE event is sent."""
    state = state_of(request)
    partition = state.partition(appkey)
    if body.unsubscribe_no not in partition.unsubscribe_numbers:
        raise NotFound(f"080 number {body.unsubscribe_no} is not registered for this appkey")
    partition.opted_out_080.add(body.recipient_no)
    at = state.now(partition).isoformat()
    engine_of(request).emit(
        partition,
        Provider.sms,
        "UNSUBSCRIBE",
        nhn_sms.unsubscribe_hook(body.recipient_no, body.unsubscribe_no, at),
    )
    return Response(status_code=204)


@router.post("/email/unsubscribe", operation_id="sandbox_email_unsubscribe", status_code=204)
async def email_unsubscribe(appkey: str, body: EmailUnsubscribe, request: Request) -> Response:
    """The recipient used the one-click unsubscribe of their latest email: an `unsubscribe` event."""
    partition = state_of(request).partition(appkey)
    latest = [
        r
        for rs in partition.records.values()
        for r in rs
        if r.provider is Provider.email and r.recipient == body.email
    ]
    if not latest:
        raise NotFound(f"no email was sent to {body.email}")
    engine_of(request).emit(
        partition, Provider.email, "unsubscribe", email_wire.event(latest[-1], "unsubscribe")
    )
    return Response(status_code=204)
