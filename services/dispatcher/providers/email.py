"""Email through an ESP in SendGrid v3's shape: POST {base}/v3/mail/send, one message per call (each
has its own text), Bearer API key, up to `concurrency` calls in flight.

202 = accepted; the message id is the X-Message-Id header (= provider_ref). The idempotency key and
Dasi's message id ride in `custom_args`, which SendGrid echoes in every event; `lookup` searches the
Email Activity API by it. One-click unsubscribe: List-Unsubscribe <url> + List-Unsubscribe-Post
(RFC 8058) when the message has an unsubscribe URL.

Events (webhook, a JSON array): delivered -> delivered; bounce -> unreachable; dropped -> failed;
deferred -> transient; unsubscribe / group_unsubscribe / spamreport -> opted_out (also in opt_outs).
The signature checked is the sandbox's: HMAC-SHA256 of the raw body, hex, in
X-Twilio-Email-Event-Webhook-Signature (SendGrid itself signs with ECDSA: not implemented here).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
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
from services.dispatcher.providers.common import (
    JSON_HEADERS,
    OptOut,
    WebhookBatch,
    body_json,
    call,
    load_json,
    parse_time,
    retry_after,
    submit_each,
    verify_signature,
)

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
KEY_ARG = "dasi_idempotency_key"

EVENT_OUTCOMES: dict[str, Outcome] = {
    "delivered": Outcome.delivered,
    "bounce": Outcome.unreachable,
    "dropped": Outcome.failed,
    "deferred": Outcome.transient,
    "unsubscribe": Outcome.opted_out,
    "group_unsubscribe": Outcome.opted_out,
    "spamreport": Outcome.opted_out,
}
STATUS_OUTCOMES: dict[int, Outcome] = {
    400: Outcome.rejected,
    401: Outcome.misconfigured,
    403: Outcome.misconfigured,
    413: Outcome.rejected,
    429: Outcome.rate_limited,
}


class EmailAdapter:
    name = "email"
    channels = frozenset({Channel.email})

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str,
        webhook_secret: str,
        concurrency: int = 64,
    ) -> None:
        self.client = client
        self.base = base_url.rstrip("/")
        self.headers = {**JSON_HEADERS, "Authorization": f"Bearer {api_key}"}
        self.webhook_secret = webhook_secret
        self.semaphore = asyncio.Semaphore(concurrency)

    async def submit(self, messages: Sequence[Outgoing]) -> list[Submission]:
        return await submit_each(messages, self._send, "unavailable")

    def _payload(self, message: Outgoing) -> bytes:
        html = message.body.lstrip().startswith("<")
        personalization: dict[str, Any] = {
            "to": [{"email": message.to}],
            "custom_args": {KEY_ARG: message.idempotency_key, "dasi_message_id": str(message.message_id)},
        }
        body: dict[str, Any] = {
            "personalizations": [personalization],
            "from": {"email": message.sender},
            "subject": message.subject or "",
            "content": [{"type": "text/html" if html else "text/plain", "value": message.body}],
        }
        if message.unsubscribe_url:
            body["headers"] = {
                "List-Unsubscribe": f"<{message.unsubscribe_url}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            }
        return orjson.dumps(body)

    async def _send(self, message: Outgoing) -> Submission:
        async with self.semaphore:
            response = await call(
                self.client,
                self.name,
                "POST",
                f"{self.base}/v3/mail/send",
                content=self._payload(message),
                headers=self.headers,
            )
        if response.status_code == 202:
            ref = response.headers.get("x-message-id")
            return Submission(message.message_id, Outcome.accepted, "202", provider_ref=ref)
        errors = (body_json(response) or {}).get("errors") or [{}]
        detail = "; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict))
        outcome = STATUS_OUTCOMES.get(response.status_code, Outcome.failed)
        wait = retry_after(response) if outcome is Outcome.rate_limited else None
        return Submission(message.message_id, outcome, str(response.status_code), detail, retry_after=wait)

    async def lookup(self, message: Outgoing) -> Submission | None:
        response = await call(
            self.client,
            self.name,
            "GET",
            f"{self.base}/v3/messages",
            headers=self.headers,
            params={"query": f"unique_args['{KEY_ARG}']=\"{message.idempotency_key}\"", "limit": "1"},
        )
        found = (body_json(response) or {}).get("messages") or []
        if not found:
            return None
        item = found[0]
        return Submission(
            message.message_id,
            _activity_outcome(item) or Outcome.accepted,
            "202",
            "found",
            provider_ref=item["msg_id"],
        )

    async def poll(self, provider_ref: str) -> DeliveryReport | None:
        response = await call(
            self.client, self.name, "GET", f"{self.base}/v3/messages/{provider_ref}", headers=self.headers
        )
        item = body_json(response)
        if response.status_code != 200 or not isinstance(item, dict):
            return None
        outcome = _activity_outcome(item)
        if outcome is None:
            return None
        events = item.get("events") or [{}]
        return DeliveryReport(
            provider_ref=provider_ref,
            outcome=outcome,
            code=str(events[-1].get("event_name") or item.get("status")),
            occurred_at=parse_time(item.get("last_event_time")),
            idempotency_key=(item.get("unique_args") or {}).get(KEY_ARG),
            cost_krw=item.get("cost_krw"),
        )

    def parse_webhook(
        self, headers: Mapping[str, str], raw_body: bytes, secret: str | None = None
    ) -> list[DeliveryReport]:
        return parse_webhook(headers, raw_body, secret or self.webhook_secret)


def _activity_outcome(item: Mapping[str, Any]) -> Outcome | None:
    status = item.get("status")
    if status == "delivered":
        return Outcome.delivered
    if status == "not_delivered":
        events = item.get("events") or [{}]
        return EVENT_OUTCOMES.get(str(events[-1].get("event_name")), Outcome.failed)
    return None


def parse_events(headers: Mapping[str, str], raw_body: bytes, secret: str) -> WebhookBatch:
    verify_signature(headers, SIGNATURE_HEADER, raw_body, secret)
    events = load_json(raw_body)
    batch = WebhookBatch()
    if not isinstance(events, list):
        raise ValueError("an email event webhook body is a JSON array")
    for event in events:
        if not isinstance(event, dict):
            continue
        name = str(event.get("event"))
        outcome = EVENT_OUTCOMES.get(name)
        if outcome is None:
            continue  # processed, open, click: not a delivery result
        at = parse_time(event.get("timestamp"))
        batch.reports.append(
            DeliveryReport(
                provider_ref=str(event.get("sg_message_id", "")).split(".", 1)[0],
                outcome=outcome,
                code=name,
                occurred_at=at,
                idempotency_key=event.get(KEY_ARG),
                cost_krw=event.get("cost_krw"),
                detail=str(event.get("reason") or ""),
            )
        )
        if outcome is Outcome.opted_out:
            batch.opt_outs.append(
                OptOut(recipient=str(event.get("email")), occurred_at=at, via=f"email:{name}")
            )
    return batch


def parse_webhook(headers: Mapping[str, str], raw_body: bytes, secret: str) -> list[DeliveryReport]:
    return parse_events(headers, raw_body, secret).reports
