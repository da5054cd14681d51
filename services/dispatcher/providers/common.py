"""What the HTTP adapters share: calling a provider (transport errors and 5xx become
ProviderUnavailable), webhook signatures, opt-out events, batching helpers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
import httpx
import orjson

from services.dispatcher.providers.base import (
    DeliveryReport,
    Outcome,
    Outgoing,
    ProviderUnavailable,
    Submission,
)

T = TypeVar("T")

JSON_HEADERS = {"Content-Type": "application/json;charset=UTF-8"}


class WebhookSignatureError(Exception):
    """A webhook whose signature does not match its body: answer 401 and do not trust it."""


@dataclass(frozen=True)
class OptOut:
    """Someone opted out outside a message's report: an NHN 080 UNSUBSCRIBE, an email unsubscribe."""

    recipient: str  # phone digits or email address
    occurred_at: datetime
    via: str  # "080:{number}", "email:unsubscribe", ...


@dataclass
class WebhookBatch:
    reports: list[DeliveryReport] = field(default_factory=list)
    opt_outs: list[OptOut] = field(default_factory=list)


def verify_signature(headers: Mapping[str, str], header: str, raw_body: bytes, secret: str) -> None:
    """The HMAC-SHA256 of the raw body under `secret`, hex, must be in `header`."""
    given = _header(headers, header)
    if not given:
        raise WebhookSignatureError(f"missing {header} header")
    expected = hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.strip().lower(), expected):
        raise WebhookSignatureError(f"{header} does not match the body (HMAC-SHA256 of the raw body)")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    if isinstance(headers, httpx.Headers):
        return headers.get(name)
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def load_json(raw_body: bytes) -> Any:
    try:
        return orjson.loads(raw_body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"webhook body is not JSON: {exc}") from exc


NHN_SIGNATURE_HEADER = "X-Toast-Webhook-Signature"
NHN_DUPLICATE = "-1005"  # the same X-NC-API-IDEMPOTENCY-KEY within 10 minutes


def nhn_idempotency_digest(messages: Sequence[Outgoing]) -> str:
    """The X-NC-API-IDEMPOTENCY-KEY of one NHN call: a digest of its messages' keys."""
    digest = hashlib.sha256("\n".join(m.idempotency_key for m in messages).encode()).hexdigest()
    return f"dasi-{digest[:48]}"


async def nhn_answer(
    batch: Sequence[Outgoing],
    response: httpx.Response,
    *,
    classify: Callable[[str], Outcome],
    results_of: Callable[[dict[str, Any]], tuple[Any, list[Any]]],
    ref_prefix: str,
    lookup: Callable[[Outgoing], Awaitable[Submission | None]],
) -> list[Submission]:
    """One Submission per message from an NHN send answer (Kakao and SMS share the envelope:
    `header{isSuccessful, resultCode, resultMessage}` and per-recipient results, which `results_of`
    finds as (requestId, results)). A call refused as a repeat (NHN_DUPLICATE) is answered from
    what NHN already holds, so a retried batch is never submitted twice."""
    if response.status_code == 429:
        wait = retry_after(response)
        return [
            Submission(m.message_id, Outcome.rate_limited, "429", "throttled", retry_after=wait)
            for m in batch
        ]
    data = body_json(response) or {}
    header = data.get("header") or {}
    if response.status_code >= 400 or not header.get("isSuccessful"):
        code = str(header.get("resultCode", response.status_code))
        detail = str(header.get("resultMessage", ""))
        if code == NHN_DUPLICATE:
            found = await asyncio.gather(*(lookup(m) for m in batch))
            return [
                f or Submission(m.message_id, Outcome.transient, code, f"duplicate, not found: {detail}")
                for m, f in zip(batch, found, strict=True)
            ]
        outcome = classify(code) if header else Outcome.misconfigured
        wait = retry_after(response) if outcome is Outcome.rate_limited else None
        return [Submission(m.message_id, outcome, code, detail, retry_after=wait) for m in batch]
    request_id, results = results_of(data)
    out = [
        Submission(
            m.message_id,
            classify(str(item.get("resultCode"))),
            str(item.get("resultCode")),
            str(item.get("resultMessage", "")),
            provider_ref=f"{ref_prefix}:{request_id}/{item.get('recipientSeq')}",
        )
        for m, item in zip(batch, results, strict=False)
    ]
    out += [Submission(m.message_id, Outcome.failed, "missing", "no sendResult") for m in batch[len(out) :]]
    return out


def nhn_envelope(envelope: Any) -> tuple[str | None, list[dict[str, Any]]]:
    """An NHN webhook body: its event name and its hooks (the ones that are objects)."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("hooks") or [], list):
        raise ValueError("an NHN webhook body is an object with a hooks list")
    hooks = [hook for hook in envelope.get("hooks") or [] if isinstance(hook, dict)]
    event = envelope.get("event")
    return (str(event) if event else None), hooks


def parse_time(value: Any, default: datetime | None = None) -> datetime:
    """ISO-8601 text or epoch seconds to an aware datetime (UTC if no offset given)."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace(" ", "T"))
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return default or datetime.now(UTC)


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


TRANSPORT_ERRORS = (httpx.TransportError, aiohttp.ClientError, asyncio.TimeoutError, OSError)


async def call(
    client: httpx.AsyncClient,
    provider: str,
    method: str,
    url: str,
    *,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
) -> httpx.Response:
    """One HTTP call; a transport failure or a 5xx answer raises ProviderUnavailable."""
    try:
        response = await client.request(method, url, content=content, headers=headers, params=params)
    except TRANSPORT_ERRORS as exc:
        raise ProviderUnavailable(provider, f"{type(exc).__name__}: {exc}") from exc
    if response.status_code >= 500:
        raise ProviderUnavailable(
            provider, f"HTTP {response.status_code}: {response.text[:200]}", retry_after(response)
        )
    return response


def body_json(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        return None


def assemble(
    count: int,
    batches: list[list[int]],
    answers: Sequence[list[Submission] | BaseException],
    messages: Sequence[Outgoing],
) -> list[Submission]:
    """Put per-call answers back in message order. A call that raised ProviderUnavailable answers
    transient for its messages, unless every call did: then it is raised (nothing was taken)."""
    if answers and all(isinstance(a, ProviderUnavailable) for a in answers):
        raise next(a for a in answers if isinstance(a, ProviderUnavailable))
    out: list[Submission | None] = [None] * count
    for batch, answer in zip(batches, answers, strict=True):
        if isinstance(answer, ProviderUnavailable):
            for i in batch:
                out[i] = Submission(
                    messages[i].message_id,
                    Outcome.transient,
                    "unavailable",
                    answer.detail,
                    retry_after=answer.retry_after,
                )
        elif isinstance(answer, BaseException):
            raise answer
        else:
            for i, submission in zip(batch, answer, strict=True):
                out[i] = submission
    return [s for s in out if s is not None]


async def submit_each(
    messages: Sequence[Outgoing], send: Callable[[Outgoing], Awaitable[Submission]], unavailable_code: str
) -> list[Submission]:
    """Submit one call per message (FCM, email) concurrently. A call that could not reach the
    provider makes that message `transient`; if every call failed so, ProviderUnavailable."""
    answers = await asyncio.gather(*(send(m) for m in messages), return_exceptions=True)
    if answers and all(isinstance(a, ProviderUnavailable) for a in answers):
        raise next(a for a in answers if isinstance(a, ProviderUnavailable))
    out = []
    for message, answer in zip(messages, answers, strict=True):
        if isinstance(answer, ProviderUnavailable):
            out.append(
                Submission(
                    message.message_id,
                    Outcome.transient,
                    unavailable_code,
                    answer.detail,
                    retry_after=answer.retry_after,
                )
            )
        elif isinstance(answer, BaseException):
            raise answer
        else:
            out.append(answer)
    return out
