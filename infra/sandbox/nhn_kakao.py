"""NHN Cloud KakaoTalk Bizmessage, as the sandbox speaks it.

    POST /alimtalk/v2.3/appkeys/{appkey}/messages         senderKey, templateCode, recipientList[]
    POST /friendtalk/v2.4/appkeys/{appkey}/messages       senderKey, recipientList[] (content, imageUrl,
                                                          buttons, isAd)
    POST /brand-message/v1.0/appkeys/{appkey}/messages    senderKey, targeting (I | M | N), recipientList[]
    GET  /{product}/{version}/appkeys/{appkey}/messages/{requestId}/{recipientSeq}   one result
    GET  /{product}/{version}/appkeys/{appkey}/messages?recipientGroupingKey=...|requestId=...   a list

Header `X-Secret-Key`; optional `X-NC-API-IDEMPOTENCY-KEY` (the same key again within 10 minutes
answers -1005). HTTP 200 even for a refused call: `header{resultCode, resultMessage, isSuccessful}`.
`resultCode` 0 in `sendResults` only means accepted: the delivery result (Kakao 1000 / 2003 / 3019 ...)
follows by webhook (MESSAGE_RESULT_UPDATE) and polling, with `resendStatus` when the provider ran the
SMS fallback (`resendParameter.isResend`). Sandbox extension: `costKrw` on every result.
"""

from __future__ import annotations

import uuid
from datetime import time
from typing import Any

from fastapi import APIRouter, Request, Response

from infra.sandbox import nhn_sms
from infra.sandbox.delivery import Stage
from infra.sandbox.state import Behaviour, Partition, Provider, Record
from infra.sandbox.wire import (
    Refusal,
    engine_of,
    gate,
    json_response,
    log_nhn_submission,
    nhn_header,
    read_json,
    state_of,
)
from shared.clock import is_within_local_window

router = APIRouter(tags=["nhn-kakao (wire)"])

KINDS = {"alimtalk": "alimtalk", "friendtalk": "friendtalk", "brand-message": "brand"}
MESSAGE_TYPES = {"alimtalk": "ALIMTALK", "friendtalk": "FRIENDTALK", "brand": "BRAND_MESSAGE"}
MAX_RECIPIENTS = 1000
KAKAO_HOURS = (time(8, 0), time(20, 50))  # friendtalk / brand message, Korean time (3022 outside)

# Codes the sandbox answers with (Kakao's own where DOMAIN.md names one).
RESULT_NAMES = {
    "1000": "성공",
    "2003": "메시지 전송 실패(채널 친구가 아님)",
    "3008": "전화번호 오류",
    "3019": "카카오톡 사용자가 아님",
    "3022": "메시지 발송 가능한 시간이 아님(08:00~20:50)",
}
UNREACHABLE_CODES = {"2003", "3008", "3018", "3019", "3020", "3021"}  # the provider falls back on these


def _refuse(code: int, message: str) -> Response:
    return json_response(nhn_header(code, message, message=None))


def _throttled() -> Response:
    return _refuse(4156, "Too many requests (rate limit)")


@router.post(
    "/alimtalk/v2.3/appkeys/{appkey}/messages", operation_id="nhn_alimtalk_send", summary="Alimtalk send"
)
async def alimtalk_send(appkey: str, request: Request) -> Response:
    return await _send(appkey, "alimtalk", request)


@router.post(
    "/friendtalk/v2.4/appkeys/{appkey}/messages",
    operation_id="nhn_friendtalk_send",
    summary="Friendtalk send",
)
async def friendtalk_send(appkey: str, request: Request) -> Response:
    return await _send(appkey, "friendtalk", request)


@router.post(
    "/brand-message/v1.0/appkeys/{appkey}/messages",
    operation_id="nhn_brand_message_send",
    summary="Brand message send",
)
async def brand_send(appkey: str, request: Request) -> Response:
    return await _send(appkey, "brand", request)


def _secret_ok(partition: Partition, request: Request) -> bool:
    given = request.headers.get("x-secret-key")
    if not given:
        return False
    return partition.secret_key is None or given == partition.secret_key


async def _send(appkey: str, kind: str, request: Request) -> Response:
    state = state_of(request)
    partition = state.partition(appkey)
    try:
        await gate(state, partition, Provider.kakao, send=True, throttled=_throttled)
    except Refusal as refusal:
        log_nhn_submission(
            state, partition, Provider.kakao, kind, request, None, [], str(refusal.response.status_code)
        )
        return refusal.response
    if not _secret_ok(partition, request):
        return _refuse(-1004, "Invalid secretKey.")
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("recipientList"), list):
        return _refuse(-9995, "Invalid request: recipientList is required.")
    recipients: list[dict[str, Any]] = [r for r in body["recipientList"] if isinstance(r, dict)]
    grouping_keys = [r.get("recipientGroupingKey") for r in recipients]
    idempotency_key = request.headers.get("x-nc-api-idempotency-key")
    if not recipients or len(recipients) > MAX_RECIPIENTS:
        return _refuse(-9995, f"Invalid request: 1 to {MAX_RECIPIENTS} recipients a call.")
    if idempotency_key and state.seen_idempotency_key(partition, idempotency_key):
        log_nhn_submission(state, partition, Provider.kakao, kind, request, None, grouping_keys, "-1005")
        return _refuse(-1005, "Duplicated request (X-NC-API-IDEMPOTENCY-KEY used within 10 minutes).")
    sender_key = body.get("senderKey")
    if sender_key not in partition.sender_keys:
        log_nhn_submission(state, partition, Provider.kakao, kind, request, None, grouping_keys, "1003")
        return _refuse(1003, "Invalid sender key (not registered).")
    template_code = body.get("templateCode")
    if kind == "alimtalk":
        if not template_code:
            return _refuse(-9995, "Invalid request: templateCode is required.")
        if partition.templates and template_code not in partition.templates:
            log_nhn_submission(state, partition, Provider.kakao, kind, request, None, grouping_keys, "3016")
            return _refuse(3016, "Template not found or not approved.")
    targeting = body.get("targeting", "I")

    request_id = state.new_request_id()
    if idempotency_key:
        state.remember_idempotency_key(partition, idempotency_key, request_id)
    now = state.now(partition)
    in_hours = is_within_local_window(now, "Asia/Seoul", *KAKAO_HOURS)
    delay = partition.providers[Provider.kakao].delivery_delay_ms / 1000
    engine = engine_of(request)
    results = []
    for seq, recipient in enumerate(recipients, start=1):
        recipient_no = str(recipient.get("recipientNo", ""))
        content = str(recipient.get("content") or "")
        image = recipient.get("imageUrl") or recipient.get("imageLink")
        code, message = "0", "SUCCESS"
        if not recipient_no.isdigit():
            code, message = "-9995", "Invalid recipientNo."
        elif kind != "alimtalk" and (not content or len(content) > (400 if image else 1000)):
            code, message = "-9995", "content is required: at most 1,000 characters (400 with an image)."
        record = Record(
            provider=Provider.kakao,
            kind=kind,
            request_id=request_id,
            seq=seq,
            recipient=recipient_no,
            grouping_key=recipient.get("recipientGroupingKey"),
            created_at=now,
            is_ad=bool(recipient.get("isAd", kind != "alimtalk")),
            sender=str(sender_key),
            template_code=template_code,
            body=content,
            extra={"targeting": targeting, "templateParameter": recipient.get("templateParameter") or {}},
        )
        resend = recipient.get("resendParameter") or {}
        if isinstance(resend, dict) and resend.get("isResend"):
            record.resend = resend
            record.resend_status = "RSC02"
        if code != "0":
            record.status, record.result_code, record.result_message = "FAILED", code, message
        partition.add(record)
        results.append(
            {
                "recipientSeq": seq,
                "recipientNo": recipient_no,
                "resultCode": int(code),
                "resultMessage": message,
                "recipientGroupingKey": record.grouping_key,
            }
        )
        if code == "0":
            engine.run(partition, record, _stages(partition, record, in_hours, delay), _hook)
    log_nhn_submission(state, partition, Provider.kakao, kind, request, request_id, grouping_keys, "accepted")
    return json_response(
        nhn_header(
            0,
            "SUCCESS",
            message={
                "requestId": request_id,
                "senderGroupingKey": body.get("senderGroupingKey"),
                "sendResults": results,
            },
        )
    )


def _stages(partition: Partition, record: Record, in_hours: bool, delay_s: float) -> list[Stage]:
    behaviour = partition.behaviour(record.recipient)
    prices = partition.prices
    friends_only = record.kind == "friendtalk" or (
        record.kind == "brand" and record.extra["targeting"] == "I"
    )
    if record.kind != "alimtalk" and not in_hours:
        code = "3022"  # never a fallback SMS instead at night (DOMAIN C3)
        return [
            Stage(
                delay_s, "FAILED", code, RESULT_NAMES[code], resend_status="RSC01" if record.resend else None
            )
        ]
    if behaviour is Behaviour.not_kakao_user:
        code = "3019"
    elif behaviour is Behaviour.bad_number:
        code = "3008"
    elif behaviour is Behaviour.not_friend and friends_only:
        code = "2003"
    else:
        if record.kind == "alimtalk":
            cost = prices["alimtalk"]
        elif record.kind == "friendtalk":
            cost = prices["friendtalk"]
        else:
            cost = prices["brand_non_friend" if behaviour is Behaviour.not_friend else "brand_friend"]
        return [
            Stage(
                delay_s, "COMPLETED", "1000", RESULT_NAMES["1000"], cost, "RSC01" if record.resend else None
            )
        ]
    if not record.resend:
        return [Stage(delay_s, "FAILED", code, RESULT_NAMES.get(code, ""))]
    # the provider's own SMS fallback (NHN resendParameter): billed at the SMS / LMS price
    resend_code, sms_kind = _resend(partition, record)
    succeeded = resend_code == "1000"
    return [
        Stage(
            delay_s,
            "FAILED",
            code,
            RESULT_NAMES.get(code, ""),
            cost_krw=partition.prices[sms_kind] if succeeded else 0,
            resend_status="RSC04" if succeeded else "RSC05",
            resend_result_code=resend_code,
        )
    ]


def _resend(partition: Partition, record: Record) -> tuple[str, str]:
    resend = record.resend or {}
    content = str(resend.get("resendContent") or record.body)
    sms_kind = "lms" if str(resend.get("resendType", "SMS")).upper() == "LMS" else "sms"
    if str(resend.get("resendSendNo", "")) not in partition.sender_numbers:
        return nhn_sms.SENDER_NOT_REGISTERED, sms_kind
    if record.is_ad:  # an ad's fallback goes out in ad form (DOMAIN C11)
        problem = nhn_sms.ad_form_problem(partition, content, resend.get("resendUnsubscribeNo"))
        if problem:
            return nhn_sms.AD_FORM_INVALID, sms_kind
    limit_problem = nhn_sms.byte_problem(sms_kind, content, resend.get("resendTitle"))
    if limit_problem:
        return limit_problem[0], sms_kind
    code = nhn_sms.final_code(partition, record.recipient, is_ad=record.is_ad)
    return code, sms_kind


def _hook(record: Record) -> dict[str, Any]:
    return {
        "hookId": uuid.uuid4().hex,
        "messageType": MESSAGE_TYPES[record.kind],
        "senderKey": record.sender,
        "templateCode": record.template_code,
        "requestId": record.request_id,
        "recipientSeq": record.seq,
        "recipientNo": record.recipient,
        "messageStatus": record.status,
        "resultCode": record.result_code,
        "resultCodeName": record.result_message,
        "resendStatus": record.resend_status,
        "resendResultCode": record.resend_result_code,
        "recipientGroupingKey": record.grouping_key,
        "requestDate": record.created_at.isoformat(),
        "receiveDate": record.completed_at.isoformat() if record.completed_at else None,
        "costKrw": record.cost_krw,
    }


def _message(record: Record) -> dict[str, Any]:
    return {**_hook(record), "content": record.body, "isAd": record.is_ad}


async def _read_gate(appkey: str, request: Request) -> tuple[Partition, Response | None]:
    state = state_of(request)
    partition = state.partition(appkey)
    try:
        await gate(state, partition, Provider.kakao, send=False, throttled=_throttled)
    except Refusal as refusal:
        return partition, refusal.response
    if not _secret_ok(partition, request):
        return partition, _refuse(-1004, "Invalid secretKey.")
    return partition, None


@router.get(
    "/{product}/{version}/appkeys/{appkey}/messages/{request_id}/{recipient_seq}",
    operation_id="nhn_kakao_message_get",
    summary="One Kakao message's result",
)
async def message_get(
    product: str, version: str, appkey: str, request_id: str, recipient_seq: int, request: Request
) -> Response:
    partition, refused = await _read_gate(appkey, request)
    if refused:
        return refused
    record = partition.record(request_id, recipient_seq)
    if record is None or record.kind != KINDS.get(product):
        return _refuse(-2008, "Invalid requestId or recipientSeq.")
    return json_response(nhn_header(0, "SUCCESS", message=_message(record)))


@router.get(
    "/{product}/{version}/appkeys/{appkey}/messages",
    operation_id="nhn_kakao_messages_list",
    summary="Kakao messages by requestId or recipientGroupingKey",
)
async def messages_list(
    product: str,
    version: str,
    appkey: str,
    request: Request,
    requestId: str | None = None,
    recipientGroupingKey: str | None = None,
) -> Response:
    partition, refused = await _read_gate(appkey, request)
    if refused:
        return refused
    kind = KINDS.get(product)
    if requestId:
        found = partition.records.get(requestId, [])
    elif recipientGroupingKey:
        found = partition.by_grouping_key.get(recipientGroupingKey, [])
    else:
        return _refuse(-9995, "requestId or recipientGroupingKey is required.")
    messages = [_message(r) for r in found if r.kind == kind]
    return json_response(nhn_header(0, "SUCCESS", messages=messages, totalCount=len(messages)))
