"""NHN Cloud SMS v3.0: SMS, LMS, MMS and their advertising forms (ad-sms, ad-mms).

Calls: POST {base}/sms/v3.0/appKeys/{appKey}/sender/{sms|mms|ad-sms|ad-mms}, X-Secret-Key, up to
1,000 recipients a call. One call carries different texts through NHN's `##key##` substitution:
`body` "##dasi_body##" and each recipient's `templateParameter` {"dasi_body": text}. Each message's
idempotency key goes as its `recipientGroupingKey` (echoed by reports; `lookup` searches by it) and
the call carries X-NC-API-IDEMPOTENCY-KEY, a digest of its messages' keys, so a repeated call is
refused by NHN (duplicate), after which the adapter answers from `lookup` instead.

provider_ref: "sms:{requestId}/{recipientSeq}" or "mms:{requestId}/{recipientSeq}" (the query path).
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
    NHN_SIGNATURE_HEADER,
    OptOut,
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

BODY_KEY = "dasi_body"

# NHN SMS codes -> what the pipeline does (DOMAIN.md "SMS result classes"). "0" at submit = accepted.
SMS_OUTCOMES: dict[str, Outcome] = {
    "0": Outcome.accepted,
    "1000": Outcome.delivered,
    # transient: the carrier keeps trying; a final report follows
    "1001": Outcome.transient,  # busy
    "2001": Outcome.transient,
    "2002": Outcome.transient,  # network
    "2003": Outcome.transient,  # power off
    "2004": Outcome.transient,  # storage full
    "2005": Outcome.transient,  # shadow area
    "2007": Outcome.transient,
    # permanent, the number: this person cannot be reached by SMS
    "1002": Outcome.unreachable,
    "1003": Outcome.unreachable,  # number format
    "3001": Outcome.unreachable,  # no subscriber
    "3003": Outcome.unreachable,  # unassigned number
    "3006": Outcome.failed,  # barred
    "3012": Outcome.rejected,  # spam
    "3017": Outcome.misconfigured,  # sender spoofing / blocked sender
    "3018": Outcome.misconfigured,
    "3019": Outcome.misconfigured,
    "-6001": Outcome.opted_out,  # on the 080 opt-out list
    # refusals at submit (negative: NHN API result codes; the sandbox's numbers, see infra/sandbox/nhn_sms.py)
    "-1000": Outcome.misconfigured,  # appkey / secret
    "-1001": Outcome.misconfigured,
    "-1002": Outcome.misconfigured,
    "-1008": Outcome.misconfigured,  # blocked project
    "-2018": Outcome.misconfigured,  # sender number not registered
    "-2014": Outcome.rejected,  # body over the EUC-KR byte limit
    "-2015": Outcome.rejected,  # title over 40 bytes
    "-2016": Outcome.rejected,  # characters outside EUC-KR
    "-2021": Outcome.rejected,  # ad form: "(광고)" / 080 opt-out line missing or unregistered
    "-9995": Outcome.rejected,
    "-9997": Outcome.rejected,
    "-9999": Outcome.transient,
}


def classify(code: str) -> Outcome:
    return SMS_OUTCOMES.get(code, Outcome.failed)


def _send_results(data: dict[str, Any]) -> tuple[Any, list[Any]]:
    result = (data.get("body") or {}).get("data") or {}
    return result.get("requestId"), result.get("sendResultList") or []


class NhnSmsAdapter:
    name = "nhn-sms"
    channels = frozenset({Channel.sms, Channel.lms, Channel.mms})

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        appkey: str,
        secret_key: str,
        webhook_secret: str,
        batch_size: int = 1000,
    ) -> None:
        self.client = client
        self.base = f"{base_url.rstrip('/')}/sms/v3.0/appKeys/{appkey}/sender"
        self.headers = {**JSON_HEADERS, "X-Secret-Key": secret_key}
        self.webhook_secret = webhook_secret
        self.batch_size = batch_size

    # --- submit ---------------------------------------------------------------------------------

    async def submit(self, messages: Sequence[Outgoing]) -> list[Submission]:
        groups: dict[tuple[str, str, str | None, bool], list[int]] = {}
        for index, message in enumerate(messages):
            path = ("ad-" if message.is_ad else "") + ("sms" if message.channel is Channel.sms else "mms")
            subject = message.subject if message.channel is not Channel.sms else None
            image = message.channel is Channel.mms and bool(message.image_url)
            groups.setdefault((path, message.sender, subject, image), []).append(index)
        calls = [
            (path, subject, list(batch))
            for (path, _sender, subject, _image), indexes in groups.items()
            for batch in chunks(indexes, self.batch_size)
        ]
        answers = await asyncio.gather(
            *(self._send([messages[i] for i in batch], path, subject) for path, subject, batch in calls),
            return_exceptions=True,
        )
        return assemble(len(messages), [batch for _, _, batch in calls], answers, messages)

    async def _send(self, batch: Sequence[Outgoing], path: str, subject: str | None) -> list[Submission]:
        texts = {m.body for m in batch}
        same_text = len(texts) == 1
        payload: dict[str, Any] = {
            "body": batch[0].body if same_text else f"##{BODY_KEY}##",
            "sendNo": batch[0].sender,
            "recipientList": [
                {
                    "recipientNo": m.to,
                    "recipientGroupingKey": m.idempotency_key,
                    **({} if same_text else {"templateParameter": {BODY_KEY: m.body}}),
                }
                for m in batch
            ],
        }
        if subject:
            payload["title"] = subject
        if batch[0].channel is Channel.mms and batch[0].image_url:
            payload["attachFileIdList"] = [batch[0].image_url]  # must be an uploaded file id at NHN
        headers = {**self.headers, "X-NC-API-IDEMPOTENCY-KEY": nhn_idempotency_digest(batch)}
        response = await call(
            self.client,
            self.name,
            "POST",
            f"{self.base}/{path}",
            content=orjson.dumps(payload),
            headers=headers,
        )
        kind = "sms" if path.endswith("sms") else "mms"
        return await nhn_answer(
            batch, response, classify=classify, results_of=_send_results, ref_prefix=kind, lookup=self.lookup
        )

    # --- lookup and poll ------------------------------------------------------------------------

    async def lookup(self, message: Outgoing) -> Submission | None:
        path = "sms" if message.channel is Channel.sms else "mms"
        response = await call(
            self.client,
            self.name,
            "GET",
            f"{self.base}/{path}",
            headers=self.headers,
            params={"recipientGroupingKey": message.idempotency_key},
        )
        data = body_json(response) or {}
        items = ((data.get("body") or {}).get("data")) or []
        if not items:
            return None
        item = items[0]
        code = str(item.get("resultCode") or "0")
        pending = item.get("msgStatus") in ("1", "2") or item.get("resultCode") is None
        outcome = Outcome.accepted if pending else classify(code)
        return Submission(
            message.message_id,
            outcome,
            code,
            "found by recipientGroupingKey",
            provider_ref=f"{path}:{item.get('requestId')}/{item.get('recipientSeq')}",
            cost_krw=item.get("costKrw"),
        )

    async def poll(self, provider_ref: str) -> DeliveryReport | None:
        path, _, rest = provider_ref.partition(":")
        request_id, _, seq = rest.partition("/")
        response = await call(
            self.client,
            self.name,
            "GET",
            f"{self.base}/{path}/{request_id}",
            headers=self.headers,
            params={"mtPr": seq},
        )
        data = body_json(response) or {}
        item = (data.get("body") or {}).get("data")
        if not item or not is_final(item):
            return None  # still with the carrier (requested, or processing: e.g. an interim 2003)
        return report(item)

    # --- webhooks -------------------------------------------------------------------------------

    def parse_webhook(
        self, headers: Mapping[str, str], raw_body: bytes, secret: str | None = None
    ) -> list[DeliveryReport]:
        return parse_webhook(headers, raw_body, secret or self.webhook_secret)


def is_final(item: Mapping[str, Any]) -> bool:
    """msgStatus 3 (succeeded) or 0 (failed) with a result code; 1 requested / 2 processing are not."""
    return item.get("resultCode") is not None and str(item.get("msgStatus", "3")) in ("0", "3")


def report(item: Mapping[str, Any]) -> DeliveryReport:
    code = str(item.get("resultCode"))
    kind = "sms" if str(item.get("messageType", "SMS")).upper() == "SMS" else "mms"
    return DeliveryReport(
        provider_ref=f"{kind}:{item.get('requestId')}/{item.get('recipientSeq')}",
        outcome=classify(code),
        code=code,
        occurred_at=parse_time(item.get("receiveDate") or item.get("requestDate")),
        idempotency_key=item.get("recipientGroupingKey"),
        cost_krw=item.get("costKrw"),
        detail=str(item.get("resultCodeName") or ""),
    )


def parse_events(headers: Mapping[str, str], raw_body: bytes, secret: str) -> WebhookBatch:
    """Verify (HMAC-SHA256 of the raw body in X-Toast-Webhook-Signature) and map an NHN SMS webhook:
    MESSAGE_RESULT_UPDATE -> reports (final ones only: an interim 2003 "power off" while the carrier
    keeps trying is not passed on, or the pipeline would send again); UNSUBSCRIBE -> opt_outs."""
    verify_signature(headers, NHN_SIGNATURE_HEADER, raw_body, secret)
    envelope = load_json(raw_body)
    batch = WebhookBatch()
    event, hooks = nhn_envelope(envelope)
    for hook in hooks:
        if event == "UNSUBSCRIBE":
            batch.opt_outs.append(
                OptOut(
                    recipient=str(hook.get("recipientNo")),
                    occurred_at=parse_time(hook.get("createdDateTime")),
                    via=f"080:{hook.get('unsubscribeNo')}",
                )
            )
        elif event == "MESSAGE_RESULT_UPDATE" and is_final(hook):
            batch.reports.append(report(hook))
    return batch


def parse_webhook(headers: Mapping[str, str], raw_body: bytes, secret: str) -> list[DeliveryReport]:
    return parse_events(headers, raw_body, secret).reports
