"""Delivery results and webhooks.

A send is accepted first; its result is applied later as one or more `Stage`s (power off: an interim
SMS 2003, then delivered). Each applied stage becomes a report: visible to polling at once, and
queued for the partition's webhook for that provider, if one is set.

Webhooks: reports are gathered per (appkey, provider, event) for `webhook_flush_ms` (at most
`webhook_batch_max` a call), shuffled (receivers must not rely on order), and POSTed with the
HMAC-SHA256 of the raw body, hex, in the provider's signature header:

    NHN (Kakao, SMS):  X-Toast-Webhook-Signature
    email (SendGrid):  X-Twilio-Email-Event-Webhook-Signature

A call is retried with exponential backoff (`backoff_s`, doubled each try) until the receiver
answers 200, and given up after `max_attempts`. Every try is in the inspection API's webhook log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import structlog
from httpx_aiohttp import AiohttpTransport

from infra.sandbox.settings import SandboxSettings
from infra.sandbox.state import Partition, Provider, Record, SandboxState, WebhookAttempt

log = structlog.get_logger(__name__)

SIGNATURE_HEADERS: dict[Provider, str] = {
    Provider.kakao: "X-Toast-Webhook-Signature",
    Provider.sms: "X-Toast-Webhook-Signature",
    Provider.email: "X-Twilio-Email-Event-Webhook-Signature",
}

PRODUCT_NAMES = {Provider.kakao: "KakaoTalk Bizmessage", Provider.sms: "SMS"}


def sign(secret: str, raw_body: bytes) -> str:
    return hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Stage:
    """One step of a message's fate, applied `delay_s` after the previous one."""

    delay_s: float
    status: str  # COMPLETED | FAILED | SENDING (interim)
    result_code: str
    result_message: str
    cost_krw: int = 0
    resend_status: str | None = None
    resend_result_code: str | None = None


HookBuilder = Callable[[Record], Any]


class Engine:
    def __init__(self, state: SandboxState, settings: SandboxSettings) -> None:
        self.state = state
        self.settings = settings
        self._pending: dict[tuple[str, Provider, str], list[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            transport=AiohttpTransport(), timeout=self.settings.webhook_timeout_s, follow_redirects=False
        )

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._client is not None:
            await self._client.aclose()

    # --- results --------------------------------------------------------------------------------

    def run(self, partition: Partition, record: Record, stages: list[Stage], hook: HookBuilder) -> None:
        """Apply `stages` to `record` in time (the first at once when its delay is 0)."""
        if not stages:
            return
        first, rest = stages[0], stages[1:]
        if first.delay_s <= 0:
            self._apply(partition, record, first, rest, hook)
        else:
            self._later(first.delay_s, self._apply, partition, record, first, rest, hook)

    def _apply(
        self, partition: Partition, record: Record, stage: Stage, rest: list[Stage], hook: HookBuilder
    ) -> None:
        record.status = stage.status
        record.result_code = stage.result_code
        record.result_message = stage.result_message
        record.cost_krw = stage.cost_krw
        if stage.resend_status is not None:
            record.resend_status = stage.resend_status
            record.resend_result_code = stage.resend_result_code
        if stage.status in ("COMPLETED", "FAILED"):
            record.completed_at = self.state.now(partition)
        if record.provider in partition.webhooks:  # build the report only when someone listens
            self.emit(partition, record.provider, "MESSAGE_RESULT_UPDATE", hook(record))
        if rest:
            self.run(partition, record, [rest[0], *rest[1:]], hook)

    def _later(self, delay_s: float, fn: Callable[..., None], *args: Any) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            fn(*args)

        handle = loop.call_later(delay_s, fire)
        self._timers.add(handle)

    # --- webhooks -------------------------------------------------------------------------------

    def emit(self, partition: Partition, provider: Provider, event: str, item: Any) -> None:
        """Queue one report (hook / event) for the partition's webhook of `provider`."""
        if provider not in partition.webhooks:
            return
        key = (partition.appkey, provider, event)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = []
            self._later(self.settings.webhook_flush_ms / 1000, self._flush, key)
        pending.append(item)
        if len(pending) >= self.settings.webhook_batch_max:
            self._flush(key)

    def _flush(self, key: tuple[str, Provider, str]) -> None:
        items = self._pending.pop(key, None)
        if not items:
            return
        self.state.random.shuffle(items)  # delivered in any order
        appkey, provider, event = key
        task = asyncio.get_running_loop().create_task(self._deliver(appkey, provider, event, items))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def envelope(self, appkey: str, provider: Provider, event: str, items: list[Any]) -> Any:
        if provider is Provider.email:
            return items  # SendGrid posts a bare JSON array of events
        return {
            "hooksId": uuid.uuid4().hex,
            "webhookConfigId": f"sandbox-{provider.value}",
            "productName": PRODUCT_NAMES.get(provider, provider.value),
            "appKey": appkey,
            "event": event,
            "hooks": items,
        }

    async def _deliver(self, appkey: str, provider: Provider, event: str, items: list[Any]) -> None:
        partition = self.state.partitions.get(appkey)
        target = partition.webhooks.get(provider) if partition else None
        if partition is None or target is None or self._client is None:
            return
        raw = orjson.dumps(self.envelope(appkey, provider, event, items))
        headers = {
            "Content-Type": "application/json;charset=UTF-8",
            SIGNATURE_HEADERS.get(provider, "X-Sandbox-Signature"): sign(target.secret, raw),
        }
        max_attempts = target.max_attempts or self.settings.webhook_max_attempts
        backoff = self.settings.webhook_backoff_s if target.backoff_s is None else target.backoff_s
        for attempt in range(1, max_attempts + 1):
            status: int | None
            try:
                response = await self._client.post(
                    target.url, content=raw, headers={**headers, "X-Sandbox-Attempt": str(attempt)}
                )
                status = response.status_code
            except httpx.HTTPError as exc:
                status = None
                log.info("sandbox_webhook_unreachable", url=target.url, error=str(exc), attempt=attempt)
            partition.webhook_log.append(
                WebhookAttempt(provider, event, attempt, status, len(items), self.state.now(partition))
            )
            if status == 200:
                return
            if attempt < max_attempts:
                await asyncio.sleep(backoff * 2 ** (attempt - 1))
        log.warning("sandbox_webhook_given_up", url=target.url, attempts=max_attempts, items=len(items))
