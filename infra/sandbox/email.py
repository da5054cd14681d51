"""An email service provider in SendGrid v3's shape, as the sandbox speaks it.

    POST /v3/mail/send     Authorization: Bearer {api key}   (the api key names the sandbox partition)
        202 (empty body, X-Message-Id header); 400 {"errors": [...]}; 401; 429 + Retry-After
    GET  /v3/messages/{msg_id}                          Email Activity: {"msg_id", "status", ...}
    GET  /v3/messages?query=unique_args['k']="v"     Email Activity search by a custom arg

`custom_args` come back in every event; `headers` (List-Unsubscribe, List-Unsubscribe-Post) are
recorded per message for inspection. Events (delivered, bounce, unsubscribe) are POSTed as
SendGrid's JSON array, `sg_message_id` = "{X-Message-Id}.sandbox.{n}". Sandbox extension:
`cost_krw` on every event. SendGrid signs its event webhook with ECDSA; the sandbox uses the
HMAC-SHA256 of the raw body (hex) in `X-Twilio-Email-Event-Webhook-Signature` instead.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import APIRouter, Request, Response

from infra.sandbox.delivery import Stage
from infra.sandbox.state import Behaviour, Partition, Provider, Record, Submission
from infra.sandbox.wire import Refusal, engine_of, gate, json_response, read_json, state_of

router = APIRouter(tags=["email (wire)"])

MAX_PERSONALIZATIONS = 1000
_QUERY = re.compile(r"""unique_args\['([^']+)'\]\s*=\s*"([^"]*)\"""")


def _errors(status: int, message: str, field: str | None = None) -> Response:
    return json_response({"errors": [{"message": message, "field": field, "help": None}]}, status)


def _api_key(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    return auth[7:] if auth.lower().startswith("bearer ") else ""


@router.post("/v3/mail/send", operation_id="email_send", summary="SendGrid v3 mail/send")
async def send(request: Request) -> Response:
    api_key = _api_key(request)
    if not api_key:
        return _errors(401, "The provided authorization grant is invalid, expired, or revoked")
    state = state_of(request)
    partition = state.partition(api_key)
    try:
        await gate(
            state, partition, Provider.email, send=True, throttled=lambda: _errors(429, "too many requests")
        )
    except Refusal as refusal:
        _log(partition, state, [], None, str(refusal.response.status_code))
        return refusal.response
    body = await read_json(request)
    if not isinstance(body, dict):
        return _errors(400, "Bad Request", None)
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        return _errors(400, "The personalizations field is required.", "personalizations")
    if len(personalizations) > MAX_PERSONALIZATIONS:
        return _errors(400, "Too many personalizations (1,000 at most).", "personalizations")
    sender = body.get("from")
    if not isinstance(sender, dict) or not sender.get("email"):
        return _errors(400, "The from object must be provided for every email send.", "from")
    content = body.get("content")
    if not isinstance(content, list) or not content:
        return _errors(
            400, "Unless a valid template_id is provided, the content parameter is required.", "content"
        )
    message_id = uuid.uuid4().hex[:22]
    now = state.now(partition)
    engine = engine_of(request)
    delay = partition.providers[Provider.email].delivery_delay_ms / 1000
    base_args = body.get("custom_args") or {}
    text = next((str(c.get("value", "")) for c in content if isinstance(c, dict)), "")
    seq = 0
    grouping_keys: list[str | None] = []
    for personalization in personalizations:
        if not isinstance(personalization, dict):
            continue
        custom_args = {**base_args, **(personalization.get("custom_args") or {})}
        headers = {**(body.get("headers") or {}), **(personalization.get("headers") or {})}
        for to in personalization.get("to") or []:
            seq += 1
            email = str(to.get("email", "")) if isinstance(to, dict) else ""
            key = custom_args.get("dasi_idempotency_key")
            grouping_keys.append(key)
            record = Record(
                provider=Provider.email,
                kind="email",
                request_id=message_id,
                seq=seq,
                recipient=email,
                grouping_key=key,
                created_at=now,
                sender=str(sender.get("email")),
                title=personalization.get("subject") or body.get("subject"),
                body=text,
                extra={
                    "custom_args": custom_args,
                    "headers": headers,
                    "sg_message_id": f"{message_id}.sandbox.{seq}",
                },
            )
            partition.add(record)
            partition.by_message_id[message_id] = record
            engine.run(partition, record, _stages(partition, record, delay), event)
    _log(partition, state, grouping_keys, message_id, "accepted")
    return Response(status_code=202, headers={"X-Message-Id": message_id})


def _stages(partition: Partition, record: Record, delay_s: float) -> list[Stage]:
    if partition.behaviour(record.recipient) is Behaviour.bounce:
        return [Stage(delay_s, "FAILED", "bounce", "550 5.1.1 The email account does not exist.")]
    return [Stage(delay_s, "COMPLETED", "delivered", "250 OK", partition.prices["email"])]


def event(record: Record, name: str | None = None) -> dict[str, Any]:
    name = name or str(record.result_code)
    out: dict[str, Any] = {
        "email": record.recipient,
        "timestamp": int(record.created_at.timestamp()),
        "event": name,
        "sg_event_id": uuid.uuid4().hex,
        "sg_message_id": record.extra["sg_message_id"],
        "cost_krw": record.cost_krw if name == "delivered" else 0,
        **record.extra["custom_args"],
    }
    if name == "bounce":
        out.update({"type": "bounce", "status": "5.1.1", "reason": record.result_message})
    return out


def _log(
    partition: Partition, state: Any, grouping_keys: list[str | None], request_id: str | None, answer: str
) -> None:
    partition.submissions.append(
        Submission(
            provider=Provider.email,
            endpoint="mail/send",
            at=state.now(partition),
            idempotency_key=grouping_keys[0] if len(grouping_keys) == 1 else None,
            request_id=request_id,
            recipients=len(grouping_keys),
            grouping_keys=grouping_keys,
            answer=answer,
        )
    )


def _activity(record: Record) -> dict[str, Any]:
    status = {"COMPLETED": "delivered", "FAILED": "not_delivered"}.get(record.status, "processing")
    return {
        "msg_id": record.request_id,
        "from_email": record.sender,
        "subject": record.title,
        "to_email": record.recipient,
        "status": status,
        "last_event_time": (record.completed_at or record.created_at).isoformat(),
        "events": [{"event_name": record.result_code}] if record.result_code else [],
        "unique_args": record.extra["custom_args"],
        "cost_krw": record.cost_krw,
    }


async def _read_gate(request: Request) -> tuple[Partition | None, Response | None]:
    api_key = _api_key(request)
    if not api_key:
        return None, _errors(401, "authorization required")
    state = state_of(request)
    partition = state.partition(api_key)
    try:
        await gate(
            state, partition, Provider.email, send=False, throttled=lambda: _errors(429, "too many requests")
        )
    except Refusal as refusal:
        return partition, refusal.response
    return partition, None


@router.get("/v3/messages/{msg_id}", operation_id="email_message_get", summary="Email Activity: one message")
async def message_get(msg_id: str, request: Request) -> Response:
    partition, refused = await _read_gate(request)
    if refused or partition is None:
        return refused or _errors(401, "authorization required")
    record = partition.by_message_id.get(msg_id)
    if record is None:
        return _errors(404, "Message not found", "msg_id")
    return json_response(_activity(record))


@router.get("/v3/messages", operation_id="email_messages_search", summary="Email Activity: search")
async def messages_search(request: Request, query: str = "", limit: int = 10) -> Response:
    partition, refused = await _read_gate(request)
    if refused or partition is None:
        return refused or _errors(401, "authorization required")
    match = _QUERY.search(query)
    if not match:
        return _errors(400, "query must name unique_args['name']=\"value\"", "query")
    name, value = match.groups()
    candidates = (
        partition.by_grouping_key.get(value, [])
        if name == "dasi_idempotency_key"
        else [r for rs in partition.records.values() for r in rs]
    )
    found = [
        r for r in candidates if r.provider is Provider.email and r.extra["custom_args"].get(name) == value
    ]
    return json_response({"messages": [_activity(r) for r in found[:limit]]})
