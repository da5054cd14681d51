"""What every provider endpoint of the sandbox shares: JSON in and out (orjson), the scripted
provider behaviour (latency, outage, error rate, throttling), and the app's state and engine."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import Request, Response

from infra.sandbox.delivery import Engine
from infra.sandbox.state import Partition, Provider, SandboxState, Submission

JSON = "application/json;charset=UTF-8"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def state_of(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def read_json(request: Request) -> Any:
    """The body as JSON, or None when it is not JSON."""
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


class Refusal(Exception):
    """Answer the call with this response instead (outage, error, throttled)."""

    def __init__(self, response: Response) -> None:
        self.response = response


async def gate(
    state: SandboxState,
    partition: Partition,
    provider: Provider,
    *,
    send: bool,
    throttled: Callable[[], Response],
) -> None:
    """Apply the provider behaviour scripted for this appkey; raise Refusal to answer otherwise.

    Outage and error rate apply to every call (sends, polls, lookups); throttling only to sends."""
    behaviour = partition.providers[provider]
    if behaviour.latency_ms:
        await asyncio.sleep(behaviour.latency_ms / 1000)
    if behaviour.outage:
        raise Refusal(outage_response(provider))
    if behaviour.error_rate and state.random.random() < behaviour.error_rate:
        raise Refusal(error_response(provider))
    if send and partition.throttled(provider):
        response = throttled()
        response.headers["Retry-After"] = str(behaviour.retry_after_s)
        raise Refusal(response)


def _google_error(code: int, status: str, message: str, error_code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if error_code:
        error["details"] = [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}
        ]
    return {"error": error}


def outage_response(provider: Provider) -> Response:
    if provider is Provider.fcm:
        return json_response(
            _google_error(503, "UNAVAILABLE", "The service is currently unavailable.", "UNAVAILABLE"), 503
        )
    if provider is Provider.email:
        return json_response({"errors": [{"message": "Service Unavailable", "field": None}]}, 503)
    return json_response(nhn_header(-9999, "Service unavailable (sandbox outage)"), 503)


def error_response(provider: Provider) -> Response:
    if provider is Provider.fcm:
        return json_response(_google_error(500, "INTERNAL", "Internal error encountered.", "INTERNAL"), 500)
    if provider is Provider.email:
        return json_response({"errors": [{"message": "Internal Server Error", "field": None}]}, 500)
    return json_response(nhn_header(-9999, "System error (sandbox error rate)"), 500)


def nhn_header(code: int | str, result_message: str, /, **rest: Any) -> dict[str, Any]:
    successful = str(code) == "0"
    return {
        "header": {"resultCode": int(code), "resultMessage": result_message, "isSuccessful": successful},
        **rest,
    }


def google_error(code: int, status: str, message: str, error_code: str | None = None) -> dict[str, Any]:
    return _google_error(code, status, message, error_code)


def log_nhn_submission(
    state: SandboxState,
    partition: Partition,
    provider: Provider,
    endpoint: str,
    request: Request,
    request_id: str | None,
    grouping_keys: list[Any],
    answer: str,
) -> None:
    """Keep an NHN call (Kakao or SMS) for the inspection API, whatever its answer."""
    partition.submissions.append(
        Submission(
            provider=provider,
            endpoint=endpoint,
            at=state.now(partition),
            idempotency_key=request.headers.get("x-nc-api-idempotency-key"),
            request_id=request_id,
            recipients=len(grouping_keys),
            grouping_keys=grouping_keys,
            answer=answer,
        )
    )
