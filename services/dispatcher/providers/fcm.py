"""FCM HTTP v1 push: POST {base}/v1/projects/{project}/messages:send, one message per call (as FCM
has it), Bearer auth, up to `concurrency` calls in flight.

FCM sends no delivery reports: a 200 is the last word, so it answers `delivered` at once (and
`poll` repeats that). The idempotency key rides in `data.dasi_idempotency_key`; FCM cannot look a
message up, the sandbox can (`lookup` uses its extension when `lookup_supported`, else None).

Errors (FCM's errorCode): UNREGISTERED 404 -> unreachable (delete the token); INVALID_ARGUMENT 400 ->
rejected; SENDER_ID_MISMATCH 403 / 401 -> misconfigured; QUOTA_EXCEEDED 429 -> rate_limited with
Retry-After; UNAVAILABLE 503 / INTERNAL 500 -> transient for that message, ProviderUnavailable when
every call of the batch failed so.

provider_ref: the message name, "projects/{project}/messages/{id}".
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from services.dispatcher.providers.base import (
    Channel,
    DeliveryReport,
    Outcome,
    Outgoing,
    Submission,
)
from services.dispatcher.providers.common import JSON_HEADERS, body_json, call, retry_after, submit_each

IDEMPOTENCY_DATA_KEY = "dasi_idempotency_key"

FCM_OUTCOMES: dict[str, Outcome] = {
    "UNREGISTERED": Outcome.unreachable,
    "INVALID_ARGUMENT": Outcome.rejected,
    "SENDER_ID_MISMATCH": Outcome.misconfigured,
    "THIRD_PARTY_AUTH_ERROR": Outcome.misconfigured,
    "UNAUTHENTICATED": Outcome.misconfigured,
    "PERMISSION_DENIED": Outcome.misconfigured,
    "QUOTA_EXCEEDED": Outcome.rate_limited,
    "RESOURCE_EXHAUSTED": Outcome.rate_limited,
    "UNAVAILABLE": Outcome.transient,
    "INTERNAL": Outcome.transient,
    "NOT_FOUND": Outcome.unreachable,
}


def classify(code: str) -> Outcome:
    return FCM_OUTCOMES.get(code, Outcome.failed)


def error_code(body: Any, status: int) -> tuple[str, str]:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return str(status), ""
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("errorCode"):
            return str(detail["errorCode"]), str(error.get("message", ""))
    return str(error.get("status") or status), str(error.get("message", ""))


class FcmAdapter:
    name = "fcm"
    channels = frozenset({Channel.push})

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        project_id: str,
        access_token: str,
        concurrency: int = 64,
        lookup_supported: bool = True,
    ) -> None:
        self.client = client
        self.base = f"{base_url.rstrip('/')}/v1/projects/{project_id}"
        self.headers = {**JSON_HEADERS, "Authorization": f"Bearer {access_token}"}
        self.semaphore = asyncio.Semaphore(concurrency)
        self.lookup_supported = lookup_supported

    async def submit(self, messages: Sequence[Outgoing]) -> list[Submission]:
        return await submit_each(messages, self._send, "UNAVAILABLE")

    def _payload(self, message: Outgoing) -> bytes:
        notification = {"body": message.body}
        if message.subject:
            notification["title"] = message.subject
        data = {**message.data, IDEMPOTENCY_DATA_KEY: message.idempotency_key}
        return orjson.dumps({"message": {"token": message.to, "notification": notification, "data": data}})

    async def _send(self, message: Outgoing) -> Submission:
        async with self.semaphore:
            response = await call(
                self.client,
                self.name,
                "POST",
                f"{self.base}/messages:send",
                content=self._payload(message),
                headers=self.headers,
            )
        body = body_json(response)
        if response.status_code == 200 and isinstance(body, dict) and body.get("name"):
            return Submission(message.message_id, Outcome.delivered, "200", provider_ref=str(body["name"]))
        code, detail = error_code(body, response.status_code)
        outcome = classify(code)
        wait = retry_after(response) if outcome is Outcome.rate_limited else None
        return Submission(message.message_id, outcome, code, detail, retry_after=wait)

    async def lookup(self, message: Outgoing) -> Submission | None:
        if not self.lookup_supported:
            return None
        response = await call(
            self.client,
            self.name,
            "GET",
            f"{self.base}/messages",
            headers=self.headers,
            params={"idempotencyKey": message.idempotency_key},
        )
        found = (body_json(response) or {}).get("messages") or []
        if not found:
            return None
        return Submission(
            message.message_id, Outcome.delivered, "200", "found", provider_ref=found[0]["name"]
        )

    async def poll(self, provider_ref: str) -> DeliveryReport | None:
        """FCM has no delivery status: an accepted message is as delivered as FCM will say."""
        return DeliveryReport(
            provider_ref, Outcome.delivered, "200", datetime.now(UTC), detail="FCM accepted it"
        )
