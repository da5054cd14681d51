"""The sandbox's memory: one `Partition` per appkey (= FCM project id = SendGrid API key).

Concurrent tests each take a fresh appkey, so they never see each other's messages, scripts or
webhook targets. Nothing is persisted: a restart (or `DELETE /sandbox/{appkey}`) forgets it all.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from shared.clock import Clock


class Provider(StrEnum):
    kakao = "kakao"  # NHN KakaoTalk Bizmessage: alimtalk, friendtalk, brand message
    sms = "sms"  # NHN SMS v3.0: SMS, LMS, MMS, ad-SMS, ad-MMS
    fcm = "fcm"  # FCM HTTP v1
    email = "email"  # SendGrid v3 mail/send


class Behaviour(StrEnum):
    """What happens to one recipient (phone number, push token or email address)."""

    delivered = "delivered"
    not_friend = "not_friend"  # Kakao 2003: friendtalk / brand message (friends-only targeting)
    not_kakao_user = "not_kakao_user"  # Kakao 3019, every Kakao kind
    power_off_then_delivered = "power_off_then_delivered"  # SMS 2003 first, then 1000 (SMS legs only)
    opted_out_080 = "opted_out_080"  # on the 080 list: ad SMS/LMS (incl. ad fallbacks) fail with -6001
    bad_number = "bad_number"  # Kakao 3008, SMS 3003
    invalid_push_token = "invalid_push_token"  # noqa: S105 - FCM 404 UNREGISTERED
    bounce = "bounce"  # email: a bounce event instead of delivered


class ProviderBehaviour(BaseModel):
    """How a provider answers calls for this appkey."""

    latency_ms: int = Field(default=0, ge=0, le=60_000, description="Added before every answer")
    error_rate: float = Field(default=0.0, ge=0, le=1, description="Share of calls answered with HTTP 500")
    outage: bool = Field(default=False, description="Every call answers HTTP 503")
    rate_limited: bool = Field(
        default=False,
        description="Every send answers as throttled: HTTP 429 (FCM, email, SMS) or NHN 4156 (Kakao)",
    )
    rate_limit_per_s: int | None = Field(
        default=None, ge=1, description="Sends per second before answering throttled (a 1-second window)"
    )
    retry_after_s: int = Field(default=1, ge=0, description="The Retry-After of throttled answers")
    delivery_delay_ms: int = Field(
        default=0, ge=0, le=600_000, description="Time from acceptance to the delivery result (0: at once)"
    )


class WebhookTarget(BaseModel):
    url: str
    secret: str = Field(description="Key of the HMAC-SHA256 signature of the raw body")
    max_attempts: int | None = Field(default=None, ge=1, le=50, description="Default: the sandbox setting")
    backoff_s: float | None = Field(default=None, ge=0, description="First retry delay, doubled each try")


# List prices, KRW per message (DOMAIN.md "Prices"); a failed message costs nothing.
DEFAULT_PRICES: dict[str, int] = {
    "alimtalk": 9,
    "friendtalk": 20,
    "brand_friend": 20,
    "brand_non_friend": 35,
    "sms": 15,
    "lms": 40,
    "mms": 140,
    "push": 0,
    "email": 1,
}


@dataclass(slots=True)
class Record:
    """One message to one recipient, as the provider holds it."""

    provider: Provider
    kind: str  # alimtalk | friendtalk | brand | sms | lms | mms | push | email
    request_id: str
    seq: int
    recipient: str
    grouping_key: str | None
    created_at: datetime
    is_ad: bool = False
    sender: str = ""
    template_code: str | None = None
    body: str = ""
    title: str | None = None
    status: str = "READY"  # NHN-style: READY -> COMPLETED | FAILED (SENDING while a result is interim)
    result_code: str | None = None
    result_message: str = ""
    resend: dict[str, Any] | None = None  # NHN resendParameter when isResend
    resend_status: str | None = None
    resend_result_code: str | None = None
    cost_krw: int = 0
    completed_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.request_id}/{self.seq}"


@dataclass(slots=True)
class Submission:
    """One call that reached a send endpoint (accepted or not): what tests count."""

    provider: Provider
    endpoint: str
    at: datetime
    idempotency_key: str | None
    request_id: str | None
    recipients: int
    grouping_keys: list[str | None]
    answer: str  # "accepted" or the refusal code


@dataclass
class WebhookAttempt:
    provider: Provider
    event: str
    attempt: int
    status: int | None  # HTTP status, None when the receiver could not be reached
    items: int
    at: datetime


@dataclass
class Partition:
    appkey: str
    secret_key: str | None = None  # None: any X-Secret-Key / bearer token is accepted
    sender_numbers: set[str] = field(default_factory=lambda: {"15990000"})
    sender_keys: set[str] = field(default_factory=lambda: {"dasi-sandbox-sender-key"})
    unsubscribe_numbers: set[str] = field(default_factory=lambda: {"0801234567"})
    templates: set[str] = field(default_factory=set)  # empty: any alimtalk template code is approved
    opted_out_080: set[str] = field(default_factory=set)  # recipients on the 080 list
    recipients: dict[str, Behaviour] = field(default_factory=dict)
    providers: dict[Provider, ProviderBehaviour] = field(
        default_factory=lambda: {p: ProviderBehaviour() for p in Provider}
    )
    webhooks: dict[Provider, WebhookTarget] = field(default_factory=dict)
    prices: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    now_override: datetime | None = None  # the partition's own clock (Kakao hours), when set
    records: dict[str, list[Record]] = field(default_factory=dict)  # request id -> records
    by_grouping_key: dict[str, list[Record]] = field(default_factory=lambda: defaultdict(list))
    by_message_id: dict[str, Record] = field(default_factory=dict)  # FCM name / SendGrid message id
    submissions: list[Submission] = field(default_factory=list)
    idempotency: dict[str, tuple[float, str]] = field(default_factory=dict)  # key -> (monotonic, request id)
    webhook_log: list[WebhookAttempt] = field(default_factory=list)
    email_headers: dict[str, dict[str, str]] = field(default_factory=dict)  # message id -> recorded headers
    rate_window: dict[Provider, tuple[int, int]] = field(default_factory=dict)  # second -> count

    def behaviour(self, recipient: str) -> Behaviour:
        found = self.recipients.get(recipient)
        if found is None and recipient in self.opted_out_080:
            return Behaviour.opted_out_080
        return found or Behaviour.delivered

    def add(self, record: Record) -> None:
        self.records.setdefault(record.request_id, []).append(record)
        if record.grouping_key:
            self.by_grouping_key[record.grouping_key].append(record)

    def record(self, request_id: str, seq: int) -> Record | None:
        records = self.records.get(request_id)
        if not records or not 1 <= seq <= len(records):
            return None
        return records[seq - 1]

    def throttled(self, provider: Provider) -> bool:
        behaviour = self.providers[provider]
        if behaviour.rate_limited:
            return True
        if behaviour.rate_limit_per_s is None:
            return False
        second = int(time.monotonic())
        window, count = self.rate_window.get(provider, (second, 0))
        if window != second:
            window, count = second, 0
        self.rate_window[provider] = (window, count + 1)
        return count + 1 > behaviour.rate_limit_per_s


class SandboxState:
    """All partitions of one sandbox process."""

    IDEMPOTENCY_WINDOW_S = 600.0  # NHN: the same X-NC-API-IDEMPOTENCY-KEY within 10 minutes is refused

    def __init__(
        self,
        clock: Clock,
        seed: int | None = None,
        default_webhooks: dict[Provider, WebhookTarget] | None = None,
    ) -> None:
        self.clock = clock
        self.partitions: dict[str, Partition] = {}
        self.default_webhooks = default_webhooks or {}
        self.random = random.Random(seed)  # error injection, not security
        self._ids = itertools.count(1)

    def partition(self, appkey: str) -> Partition:
        found = self.partitions.get(appkey)
        if found is None:
            found = self.partitions[appkey] = Partition(appkey, webhooks=dict(self.default_webhooks))
        return found

    def reset(self, appkey: str) -> None:
        self.partitions.pop(appkey, None)

    def now(self, partition: Partition) -> datetime:
        return partition.now_override or self.clock.now()

    def new_request_id(self) -> str:
        """NHN-like request id: time-ordered, unique in the process."""
        return f"{time.strftime('%Y%m%d%H%M%S')}{next(self._ids):010d}"

    def seen_idempotency_key(self, partition: Partition, key: str) -> str | None:
        now = time.monotonic()
        found = partition.idempotency.get(key)
        if found and now - found[0] < self.IDEMPOTENCY_WINDOW_S:
            return found[1]
        return None

    def remember_idempotency_key(self, partition: Partition, key: str, request_id: str) -> None:
        partition.idempotency[key] = (time.monotonic(), request_id)
