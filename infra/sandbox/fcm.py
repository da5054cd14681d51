"""FCM HTTP v1, as the sandbox speaks it.

    POST /v1/projects/{project}/messages:send   Authorization: Bearer ...
        {"message": {"token", "notification": {"title", "body"}, "data": {}}}
        200 {"name": "projects/{project}/messages/{id}"}
        400 INVALID_ARGUMENT (no token, payload over 4,096 bytes), 401 UNAUTHENTICATED,
        404 UNREGISTERED (invalid_push_token), 429 QUOTA_EXCEEDED + Retry-After, 500 INTERNAL, 503 UNAVAILABLE

One message per call, as in FCM. FCM has no delivery reports: a 200 is the last word. Sandbox
extension (FCM has nothing like it): `GET /v1/projects/{project}/messages?idempotencyKey=...` finds
a message sent with `data.dasi_idempotency_key`, so a crash between send and record can be checked.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import orjson
from fastapi import APIRouter, Request, Response

from infra.sandbox.state import Behaviour, Partition, Provider, Record, SandboxState, Submission
from infra.sandbox.wire import Refusal, gate, google_error, json_response, state_of

router = APIRouter(tags=["fcm (wire)"])

IDEMPOTENCY_DATA_KEY = "dasi_idempotency_key"
MAX_PAYLOAD_BYTES = 4096


def _throttled() -> Response:
    return json_response(google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", "QUOTA_EXCEEDED"), 429)


@router.post("/v1/projects/{project}/messages:send", operation_id="fcm_send", summary="FCM HTTP v1 send")
async def send(project: str, request: Request) -> Response:
    return await handle_send(
        state_of(request), project, request.headers.get("authorization", ""), await request.body()
    )


async def handle_send(state: SandboxState, project: str, auth: str, raw: bytes) -> Response:
    """The send itself, also called by the app's fast path (no FastAPI routing: FCM is one call per
    message, so this is the sandbox's hottest route)."""
    partition = state.partition(project)
    token_given = auth[7:] if auth.lower().startswith("bearer ") else ""
    try:
        await gate(state, partition, Provider.fcm, send=True, throttled=_throttled)
    except Refusal as refusal:
        _log(partition, state.now(partition), None, str(refusal.response.status_code))
        return refusal.response
    if not token_given or (partition.secret_key is not None and token_given != partition.secret_key):
        return json_response(
            google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."), 401
        )
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, dict) or not message.get("token"):
        return json_response(
            google_error(400, "INVALID_ARGUMENT", "message.token is required.", "INVALID_ARGUMENT"), 400
        )
    data = message.get("data") or {}
    key = data.get(IDEMPOTENCY_DATA_KEY) if isinstance(data, dict) else None
    now = state.now(partition)
    payload = len(orjson.dumps({"notification": message.get("notification"), "data": data}))
    if payload > MAX_PAYLOAD_BYTES:
        _log(partition, now, key, "400")
        return json_response(
            google_error(
                400, "INVALID_ARGUMENT", f"Message is too big ({payload} bytes).", "INVALID_ARGUMENT"
            ),
            400,
        )
    token = str(message["token"])
    if partition.behaviour(token) is Behaviour.invalid_push_token:
        _log(partition, now, key, "404")
        return json_response(
            google_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"), 404
        )
    message_id = uuid.uuid4().hex
    name = f"projects/{project}/messages/{message_id}"
    notification = message.get("notification") or {}
    record = Record(
        provider=Provider.fcm,
        kind="push",
        request_id=message_id,
        seq=1,
        recipient=token,
        grouping_key=key,
        created_at=now,
        body=str(notification.get("body", "")) if isinstance(notification, dict) else "",
        title=notification.get("title") if isinstance(notification, dict) else None,
        status="COMPLETED",
        result_code="200",
        cost_krw=partition.prices["push"],
        completed_at=now,
        extra={"name": name},
    )
    partition.add(record)
    partition.by_message_id[name] = record
    _log(partition, now, key, "accepted", message_id)
    return json_response({"name": name})


def _log(
    partition: Partition, at: datetime, key: str | None, answer: str, request_id: str | None = None
) -> None:
    partition.submissions.append(
        Submission(
            provider=Provider.fcm,
            endpoint="messages:send",
            at=at,
            idempotency_key=key,
            request_id=request_id,
            recipients=1,
            grouping_keys=[key],
            answer=answer,
        )
    )


@router.get(
    "/v1/projects/{project}/messages",
    operation_id="fcm_messages_find",
    summary="Sandbox extension: messages sent with data.dasi_idempotency_key",
)
async def find(project: str, idempotencyKey: str, request: Request) -> Response:
    state = state_of(request)
    partition = state.partition(project)
    try:
        await gate(state, partition, Provider.fcm, send=False, throttled=_throttled)
    except Refusal as refusal:
        return refusal.response
    found = [r for r in partition.by_grouping_key.get(idempotencyKey, []) if r.provider is Provider.fcm]
    return json_response({"messages": [{"name": r.extra["name"], "token": r.recipient} for r in found]})
