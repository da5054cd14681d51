"""NHN Cloud KakaoTalk Bizmessage: alimtalk (v2.3), friendtalk (v2.4), brand message (v1.0).

Calls: POST {base}/{alimtalk/v2.3 | friendtalk/v2.4 | brand-message/v1.0}/appkeys/{appkey}/messages,
X-Secret-Key, up to 1,000 recipients a call (alimtalk: one call per sender key and template). Each
message's idempotency key is its `recipientGroupingKey` (echoed in reports; `lookup` lists by it),
and the call's X-NC-API-IDEMPOTENCY-KEY is a digest of its messages' keys: a repeated call is
refused by NHN (-1005), and the adapter then answers from `lookup`.

HTTP 200 even for a refused call: `header.isSuccessful` false refuses every message of the call with
`header.resultCode`. `sendResults[].resultCode` 0 only means accepted; Kakao's result (1000, 2003,
3019, ...) comes by webhook or polling, with `resendStatus` when NHN ran the SMS fallback asked for
by `Outgoing.provider_fallback` (RSC04: the fallback SMS arrived; RSC05: it failed).

provider_ref: "{alimtalk|friendtalk|brand}:{requestId}/{recipientSeq}".
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import orjson

from services.dispatcher.providers import nhn_sms
from services.dispatcher.providers.base import (
    Channel,
    DeliveryReport,
    Outcome,
    Outgoing,
    ProviderFallback,
    ResendStatus,
    Submission,
)
from services.dispatcher.providers.common import (
    JSON_HEADERS,
    NHN_SIGNATURE_HEADER,
    WebhookBatch,
    assemble,
    body_json,
    call,
    chunks,
    load_json,
    nhn_answer,
    nhn_envelope,
    nhn_idempotency_digest,
    parse_time,
    verify_signature,
)

PRODUCTS: dict[Channel, tuple[str, str]] = {  # channel -> (ref prefix, path)
    Channel.alimtalk: ("alimtalk", "alimtalk/v2.3"),
    Channel.friendtalk: ("friendtalk", "friendtalk/v2.4"),
    Channel.brand_message: ("brand", "brand-message/v1.0"),
}
PATHS = {prefix: path for prefix, path in PRODUCTS.values()}
MESSAGE_TYPES = {"ALIMTALK": "alimtalk", "FRIENDTALK": "friendtalk", "BRAND_MESSAGE": "brand"}

# Kakao (via NHN) codes -> what the pipeline does (DOMAIN.md "Kakao result codes").
KAKAO_OUTCOMES: dict[str, Outcome] = {
    "0": Outcome.accepted,
    "1000": Outcome.delivered,
    "3005": Outcome.delivered,  # sent, receipt unconfirmed: a fallback would duplicate it
    # cannot reach this person by Kakao: fall back now
    "2003": Outcome.unreachable,  # not a channel friend
    "3008": Outcome.unreachable,  # bad number
    "3018": Outcome.unreachable,
    "3019": Outcome.unreachable,  # not a KakaoTalk user
    "3020": Outcome.unreachable,  # blocked alimtalk
    "3021": Outcome.unreachable,  # old app
    # template / content: no retry, no fallback; the campaign is misconfigured
    **dict.fromkeys(
        ["3014", "3015", "3016", "3024", "3025", "3027", "4132", "4133", "4134"], Outcome.rejected
    ),
    # sender / channel: stop sending on this provider
    **dict.fromkeys(
        ["1003", "1006", "1007", "1021", "1022", "1023", "1024", "1025", "1027"], Outcome.misconfigured
    ),
    "3022": Outcome.outside_hours,  # only 08:00-20:50: reschedule, never an ad SMS instead
    **dict.fromkeys(["2001", "3000", "3006", "3010", "3012", "4161", "9998", "9999"], Outcome.transient),
    "4156": Outcome.rate_limited,
    "4138": Outcome.rate_limited,
    # NHN API refusals of a call
    "-1000": Outcome.misconfigured,  # appkey
    "-1004": Outcome.misconfigured,  # secret key
    "-9995": Outcome.rejected,  # invalid request (e.g. content too long)
    "-9997": Outcome.rejected,
    "-9999": Outcome.transient,
}


def _send_results(data: dict[str, Any]) -> tuple[Any, list[Any]]:
    message = data.get("message") or {}
    return message.get("requestId"), message.get("sendResults") or []


def classify(code: str) -> Outcome:
    return KAKAO_OUTCOMES.get(code, Outcome.failed)


def resend_parameter(fallback: ProviderFallback) -> dict[str, Any]:
    """NHN resendParameter: LMS when there is a title or the text is over 90 bytes (EUC-KR)."""
    try:
        size = len(fallback.content.encode("euc-kr"))
    except UnicodeEncodeError:
        size = len(fallback.content.encode())
    lms = bool(fallback.title) or size > 90
    parameter: dict[str, Any] = {
        "isResend": True,
        "resendType": "LMS" if lms else "SMS",
        "resendContent": fallback.content,
        "resendSendNo": fallback.sender_no,
    }
    if lms and fallback.title:
        parameter["resendTitle"] = fallback.title
    if fallback.unsubscribe_no:
        parameter["resendUnsubscribeNo"] = fallback.unsubscribe_no
    return parameter


class NhnKakaoAdapter:
    name = "nhn-kakao"
    channels = frozenset(PRODUCTS)

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        appkey: str,
        secret_key: str,
        webhook_secret: str,
        brand_targeting: str = "M",
        batch_size: int = 1000,
    ) -> None:
        self.client = client
        self.base = base_url.rstrip("/")
        self.appkey = appkey
        self.headers = {**JSON_HEADERS, "X-Secret-Key": secret_key}
        self.webhook_secret = webhook_secret
        self.brand_targeting = brand_targeting
        self.batch_size = batch_size

    def _url(self, prefix: str, rest: str = "") -> str:
        return f"{self.base}/{PATHS[prefix]}/appkeys/{self.appkey}/messages{rest}"

    # --- submit ---------------------------------------------------------------------------------

    async def submit(self, messages: Sequence[Outgoing]) -> list[Submission]:
        groups: dict[tuple[Channel, str, str | None], list[int]] = {}
        for index, message in enumerate(messages):
            template = message.template_code if message.channel is Channel.alimtalk else None
            groups.setdefault((message.channel, message.sender, template), []).append(index)
        calls = [
            (channel, list(batch))
            for (channel, _sender, _template), indexes in groups.items()
            for batch in chunks(indexes, self.batch_size)
        ]
        answers = await asyncio.gather(
            *(self._send(channel, [messages[i] for i in batch]) for channel, batch in calls),
            return_exceptions=True,
        )
        return assemble(len(messages), [batch for _, batch in calls], answers, messages)

    def _recipient(self, message: Outgoing) -> dict[str, Any]:
        item: dict[str, Any] = {"recipientNo": message.to, "recipientGroupingKey": message.idempotency_key}
        if message.channel is Channel.alimtalk:
            item["templateParameter"] = dict(message.template_parameters)
        else:
            item["content"] = message.body
            item["isAd"] = message.is_ad
            if message.image_url:
                item["imageUrl"] = message.image_url
        if message.buttons:
            item["buttons"] = [dict(button) for button in message.buttons]
        if message.provider_fallback:
            item["resendParameter"] = resend_parameter(message.provider_fallback)
        return item

    async def _send(self, channel: Channel, batch: Sequence[Outgoing]) -> list[Submission]:
        prefix = PRODUCTS[channel][0]
        payload: dict[str, Any] = {
            "senderKey": batch[0].sender,
            "recipientList": [self._recipient(m) for m in batch],
        }
        if channel is Channel.alimtalk:
            payload["templateCode"] = batch[0].template_code
        if channel is Channel.brand_message:
            payload["targeting"] = self.brand_targeting
        headers = {**self.headers, "X-NC-API-IDEMPOTENCY-KEY": nhn_idempotency_digest(batch)}
        response = await call(
            self.client, self.name, "POST", self._url(prefix), content=orjson.dumps(payload), headers=headers
        )
        return await nhn_answer(
            batch,
            response,
            classify=classify,
            results_of=_send_results,
            ref_prefix=prefix,
            lookup=self.lookup,
        )

    # --- lookup and poll ------------------------------------------------------------------------

    async def lookup(self, message: Outgoing) -> Submission | None:
        prefix = PRODUCTS[message.channel][0]
        response = await call(
            self.client,
            self.name,
            "GET",
            self._url(prefix),
            headers=self.headers,
            params={"recipientGroupingKey": message.idempotency_key},
        )
        items = (body_json(response) or {}).get("messages") or []
        if not items:
            return None
        item = items[0]
        status = item.get("messageStatus")
        code = str(item.get("resultCode") or "0")
        final = status in ("COMPLETED", "FAILED")
        return Submission(
            message.message_id,
            report_outcome(item) if final else Outcome.accepted,
            code,
            "found by recipientGroupingKey",
            provider_ref=f"{prefix}:{item.get('requestId')}/{item.get('recipientSeq')}",
            cost_krw=item.get("costKrw") if final else None,
        )

    async def poll(self, provider_ref: str) -> DeliveryReport | None:
        prefix, _, rest = provider_ref.partition(":")
        response = await call(
            self.client, self.name, "GET", self._url(prefix, f"/{rest}"), headers=self.headers
        )
        item = (body_json(response) or {}).get("message")
        if not item or item.get("messageStatus") not in ("COMPLETED", "FAILED"):
            return None
        return report(item, prefix)

    def parse_webhook(
        self, headers: Mapping[str, str], raw_body: bytes, secret: str | None = None
    ) -> list[DeliveryReport]:
        return parse_webhook(headers, raw_body, secret or self.webhook_secret)


def report_outcome(item: Mapping[str, Any]) -> Outcome:
    """Kakao's result, unless NHN's SMS fallback ran: RSC04 = delivered (by SMS); RSC05 = Kakao's
    failure stands, or opted_out when the fallback SMS met the 080 list."""
    resend = item.get("resendStatus")
    if resend == ResendStatus.succeeded:
        return Outcome.delivered
    if resend == ResendStatus.failed:
        resend_code = str(item.get("resendResultCode"))
        if nhn_sms.classify(resend_code) is Outcome.opted_out:
            return Outcome.opted_out
    return classify(str(item.get("resultCode")))


def report(item: Mapping[str, Any], prefix: str | None = None) -> DeliveryReport:
    prefix = prefix or MESSAGE_TYPES.get(str(item.get("messageType")), "alimtalk")
    resend = item.get("resendStatus")
    detail = str(item.get("resultCodeName") or "")
    if item.get("resendResultCode"):
        detail = f"{detail} (fallback SMS: {item.get('resendResultCode')})".strip()
    return DeliveryReport(
        provider_ref=f"{prefix}:{item.get('requestId')}/{item.get('recipientSeq')}",
        outcome=report_outcome(item),
        code=str(item.get("resultCode")),
        occurred_at=parse_time(item.get("receiveDate") or item.get("requestDate")),
        idempotency_key=item.get("recipientGroupingKey"),
        resend_status=_resend_status(resend),
        cost_krw=item.get("costKrw"),
        detail=detail,
    )


def _resend_status(value: Any) -> ResendStatus | None:
    try:
        return ResendStatus(str(value)) if value else None
    except ValueError:
        return None


def parse_events(headers: Mapping[str, str], raw_body: bytes, secret: str) -> WebhookBatch:
    """Verify (HMAC-SHA256 of the raw body in X-Toast-Webhook-Signature) and map a Kakao webhook;
    only MESSAGE_RESULT_UPDATE hooks with a final status become reports."""
    verify_signature(headers, NHN_SIGNATURE_HEADER, raw_body, secret)
    event, hooks = nhn_envelope(load_json(raw_body))
    batch = WebhookBatch()
    if event != "MESSAGE_RESULT_UPDATE":
        return batch
    for hook in hooks:
        if hook.get("messageStatus") in ("COMPLETED", "FAILED"):
            batch.reports.append(report(hook))
    return batch


def parse_webhook(headers: Mapping[str, str], raw_body: bytes, secret: str) -> list[DeliveryReport]:
    return parse_events(headers, raw_body, secret).reports
