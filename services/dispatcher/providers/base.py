"""The contract between the dispatcher's send pipeline and its provider adapters.

An adapter speaks one provider protocol over HTTP (httpx): NHN Cloud-shaped Kakao (alimtalk,
friendtalk / brand message) and SMS (SMS, LMS, MMS, ad-SMS), FCM HTTP v1 for push, a SendGrid-shaped
ESP for email. The pipeline never sees a wire format: it hands an adapter rendered `Outgoing`
messages and gets back one `Submission` per message, and later `DeliveryReport`s (webhook or poll).

Every send is asynchronous: `accepted` only means the provider took it; the final word is a report.
Result codes are classified by the adapter into an `Outcome`, so the pipeline's decisions (retry,
fall back, stop the campaign) do not depend on any provider's numbering.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class Channel(StrEnum):
    friendtalk = "friendtalk"  # Kakao marketing message to channel friends (ended at NHN 2025-12-31)
    brand_message = "brand_message"  # its successor: friends, and non-friends with marketing consent
    alimtalk = "alimtalk"  # Kakao informational message from an approved template
    sms = "sms"  # <= 90 bytes EUC-KR
    lms = "lms"  # <= 2,000 bytes EUC-KR, subject <= 40 bytes
    mms = "mms"  # LMS with an image
    push = "push"  # FCM HTTP v1
    email = "email"


class Outcome(StrEnum):
    """What a provider's answer (or report) means for the pipeline."""

    accepted = "accepted"  # taken; a delivery report will follow
    delivered = "delivered"  # final: delivered (incl. Kakao 3005 "sent, receipt unconfirmed")
    unreachable = "unreachable"  # final here: not a friend / Kakao user, bad token: fall back now
    opted_out = "opted_out"  # final: the recipient opted out (080, unsubscribe): suppress, no fallback
    transient = "transient"  # retry with backoff (<= 3), then fall back
    rate_limited = "rate_limited"  # back off (retry_after) and retry; not the recipient's fault
    outside_hours = "outside_hours"  # Kakao 3022: reschedule to the morning, never an ad SMS instead
    rejected = "rejected"  # final: content/template error for this message; no retry, no fallback
    misconfigured = "misconfigured"  # sender / channel / key error: stop sending on this provider (circuit)
    failed = "failed"  # final: delivery failed for another reason (report); fall back if the chain allows


class ResendStatus(StrEnum):
    """NHN `resendStatus`: the provider's own Kakao -> SMS fallback."""

    not_target = "RSC01"
    target = "RSC02"
    resending = "RSC03"
    succeeded = "RSC04"
    failed = "RSC05"


@dataclass(frozen=True)
class ProviderFallback:
    """Ask the provider to send this SMS/LMS itself when the Kakao message cannot be delivered
    (NHN `resendParameter`). When set, the dispatcher never sends its own fallback unless the
    report says the provider's fallback failed (DOMAIN C14)."""

    content: str  # already in ad form when the Kakao message is an ad (C11)
    sender_no: str
    title: str | None = None  # LMS subject
    unsubscribe_no: str | None = None  # the 080 number, for ad fallbacks


@dataclass(frozen=True)
class Outgoing:
    """One rendered message for one recipient on one channel, ready for the wire."""

    message_id: uuid.UUID  # Dasi's id of the message (one per recipient and send request)
    idempotency_key: str  # passed to the provider; the same key is never submitted twice
    channel: Channel
    to: str  # phone digits ("01012345678"), push token, or email address
    sender: str  # sender number, Kakao sender key, or from address
    body: str  # final text (ad label, store name and opt-out line already in place when is_ad)
    is_ad: bool = False
    subject: str | None = None  # LMS/MMS title, email subject, push title
    template_code: str | None = None  # alimtalk
    template_parameters: Mapping[str, str] = field(default_factory=dict)
    image_url: str | None = None  # friendtalk / brand message / MMS image
    buttons: Sequence[Mapping[str, Any]] = ()  # Kakao buttons: {"type": "WL", "name", "linkMo", "linkPc"}
    data: Mapping[str, str] = field(default_factory=dict)  # push data payload
    unsubscribe_url: str | None = None  # email List-Unsubscribe (one-click, RFC 8058)
    provider_fallback: ProviderFallback | None = None


@dataclass(frozen=True)
class Submission:
    """The provider's immediate answer for one `Outgoing`."""

    message_id: uuid.UUID
    outcome: Outcome
    code: str  # the provider's own result code, as text ("0", "3019", "UNREGISTERED", "202")
    detail: str = ""
    provider_ref: str | None = None  # what reports and polling name it by, e.g. "{requestId}/{recipientSeq}"
    retry_after: float | None = None  # seconds, for rate_limited / transient
    cost_krw: int | None = None  # when the provider prices it at acceptance


@dataclass(frozen=True)
class DeliveryReport:
    """A provider's later word on one message (webhook or poll)."""

    provider_ref: str
    outcome: Outcome  # delivered, unreachable, failed, opted_out, transient ...
    code: str
    occurred_at: datetime
    idempotency_key: str | None = None  # when the provider echoes it (recipientGroupingKey)
    resend_status: ResendStatus | None = None  # the provider's own SMS fallback, when it ran one
    cost_krw: int | None = None
    detail: str = ""


class ProviderAdapter(Protocol):
    """One provider protocol. Adapters are stateless apart from their httpx client."""

    name: str  # "nhn-kakao", "nhn-sms", "fcm", "email"
    channels: frozenset[Channel]

    async def submit(self, messages: Sequence[Outgoing]) -> list[Submission]:
        """Submit a batch (same channel); one Submission per message, in order. Never raises for a
        provider's refusal of one message; raises ProviderUnavailable when the provider cannot be
        reached or answers 5xx for the whole call."""
        ...

    async def lookup(self, message: Outgoing) -> Submission | None:
        """Whether the provider already holds a submission with this idempotency key (after a crash
        between submit and record); None if it never received it."""
        ...

    async def poll(self, provider_ref: str) -> DeliveryReport | None:
        """The delivery result now, or None while it is still pending."""
        ...


class ProviderUnavailable(Exception):
    """The provider could not be reached or failed the whole call (timeout, connection, 5xx)."""

    def __init__(self, provider: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"{provider}: {detail}")
        self.provider = provider
        self.detail = detail
        self.retry_after = retry_after
