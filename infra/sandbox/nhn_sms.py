"""NHN Cloud SMS v3.0, as the sandbox speaks it.

    POST /sms/v3.0/appKeys/{appKey}/sender/sms        body (<= 90 bytes EUC-KR)
    POST /sms/v3.0/appKeys/{appKey}/sender/mms        title (<= 40 bytes), body (<= 2,000 bytes); LMS, or MMS
                                                      with attachFileIdList
    POST /sms/v3.0/appKeys/{appKey}/sender/ad-sms     the same, advertising: the body starts with "(광고)" and
    POST /sms/v3.0/appKeys/{appKey}/sender/ad-mms     carries "무료수신거부 080..." (a registered 080 number)
    GET  /sms/v3.0/appKeys/{appKey}/sender/{sms|mms}/{requestId}?mtPr={recipientSeq}    one result
    GET  /sms/v3.0/appKeys/{appKey}/sender/{sms|mms}?requestId=...|recipientGroupingKey=...   a list

Header `X-Secret-Key`, optional `X-NC-API-IDEMPOTENCY-KEY`. `body` may hold `##key##` placeholders
filled from each recipient's `templateParameter` (how one call carries different texts). `sendNo`
must be a registered sender number. Limits are checked per recipient after substitution; an
over-limit or malformed ad recipient is refused in `sendResultList` with the codes below.

Delivery (`resultCode`): 1000 delivered; 2003 power off (interim: delivered later); 3003 unassigned
number; -6001 on the 080 opt-out list (ads only). Webhook events: MESSAGE_RESULT_UPDATE, UNSUBSCRIBE.

The negative refusal codes are the sandbox's own choice in NHN's style (NHN's table has one for
each case; check the numbers against NHN's result-code page before relying on them).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import APIRouter, Request, Response

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

router = APIRouter(tags=["nhn-sms (wire)"])

SENDER_NOT_REGISTERED = "-2018"
BODY_TOO_LONG = "-2014"
TITLE_TOO_LONG = "-2015"
NOT_EUC_KR = "-2016"
AD_FORM_INVALID = "-2021"
DUPLICATE_REQUEST = "-1005"
INVALID_REQUEST = "-9995"
OPTED_OUT = "-6001"

LIMITS = {"sms": 90, "lms": 2000, "mms": 2000}
TITLE_LIMIT = 40
MAX_RECIPIENTS = 1000
AD_LABEL = "(광고)"
_OPT_OUT_LINE = re.compile(r"무료\s*수신\s*거부\s*:?\s*(080[-\s]?\d{3,4}[-\s]?\d{4})")
_PLACEHOLDER = re.compile(r"##([^#]+)##")

RESULT_NAMES = {
    "1000": "성공",
    "2003": "단말기 전원 꺼짐",
    "3003": "결번",
    OPTED_OUT: "080 수신거부",
}
MSG_STATUS = {
    "READY": ("1", "요청"),
    "SENDING": ("2", "처리 중"),
    "COMPLETED": ("3", "성공"),
    "FAILED": ("0", "실패"),
}


def euc_kr_len(text: str) -> int | None:
    try:
        return len(text.encode("euc-kr"))
    except UnicodeEncodeError:
        return None


def byte_problem(kind: str, body: str, title: str | None) -> tuple[str, str] | None:
    size = euc_kr_len(body)
    if size is None or (title and euc_kr_len(title) is None):
        return NOT_EUC_KR, "Characters outside EUC-KR (e.g. emoji) cannot be sent."
    if size > LIMITS[kind]:
        return BODY_TOO_LONG, f"Body is {size} bytes (EUC-KR); {kind.upper()} allows {LIMITS[kind]}."
    if title:
        title_size = euc_kr_len(title) or 0
        if title_size > TITLE_LIMIT:
            return TITLE_TOO_LONG, f"Title is {title_size} bytes (EUC-KR); at most {TITLE_LIMIT}."
    return None


def ad_form_problem(partition: Partition, body: str, unsubscribe_no: str | None = None) -> str | None:
    if not body.startswith(AD_LABEL):
        return 'An advertising message must start with "(광고)".'
    match = _OPT_OUT_LINE.search(body)
    if not match:
        return 'An advertising message must carry "무료수신거부 080-XXX-XXXX".'
    number = re.sub(r"\D", "", match.group(1))
    if number not in partition.unsubscribe_numbers:
        return f"The 080 number {number} is not registered."
    if unsubscribe_no and re.sub(r"\D", "", unsubscribe_no) not in partition.unsubscribe_numbers:
        return f"The 080 number {unsubscribe_no} is not registered."
    return None


def final_code(partition: Partition, recipient: str, *, is_ad: bool) -> str:
    """The delivery result at the end (power off ends delivered)."""
    behaviour = partition.behaviour(recipient)
    if behaviour is Behaviour.bad_number:
        return "3003"
    if is_ad and (behaviour is Behaviour.opted_out_080 or recipient in partition.opted_out_080):
        return OPTED_OUT
    return "1000"


def _refuse(code: str, message: str) -> Response:
    return json_response(nhn_header(code, message, body=None))


def _secret_ok(partition: Partition, request: Request) -> bool:
    given = request.headers.get("x-secret-key")
    return bool(given) and (partition.secret_key is None or given == partition.secret_key)


def _throttled() -> Response:
    return json_response(nhn_header(-9999, "Too many requests."), 429)


@router.post(
    "/sms/v3.0/appKeys/{appkey}/sender/{endpoint}",
    operation_id="nhn_sms_send",
    summary="SMS / LMS / MMS send (endpoint: sms, mms, ad-sms, ad-mms)",
)
async def send(appkey: str, endpoint: str, request: Request) -> Response:
    if endpoint not in ("sms", "mms", "ad-sms", "ad-mms"):
        return json_response(nhn_header(-9998, "Not exist API."), 404)
    state = state_of(request)
    partition = state.partition(appkey)
    try:
        await gate(state, partition, Provider.sms, send=True, throttled=_throttled)
    except Refusal as refusal:
        log_nhn_submission(
            state, partition, Provider.sms, endpoint, request, None, [], str(refusal.response.status_code)
        )
        return refusal.response
    if not _secret_ok(partition, request):
        return _refuse("-1000", "Invalid appKey or secretKey.")
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("recipientList"), list):
        return _refuse(INVALID_REQUEST, "Invalid request: recipientList is required.")
    recipients: list[dict[str, Any]] = [r for r in body["recipientList"] if isinstance(r, dict)]
    grouping_keys = [r.get("recipientGroupingKey") for r in recipients]
    if not recipients or len(recipients) > MAX_RECIPIENTS:
        return _refuse(INVALID_REQUEST, f"1 to {MAX_RECIPIENTS} recipients a call.")
    idempotency_key = request.headers.get("x-nc-api-idempotency-key")
    if idempotency_key and state.seen_idempotency_key(partition, idempotency_key):
        log_nhn_submission(
            state, partition, Provider.sms, endpoint, request, None, grouping_keys, DUPLICATE_REQUEST
        )
        return _refuse(
            DUPLICATE_REQUEST, "Duplicated request (X-NC-API-IDEMPOTENCY-KEY used within 10 minutes)."
        )
    send_no = str(body.get("sendNo") or "")
    if send_no not in partition.sender_numbers:
        log_nhn_submission(
            state, partition, Provider.sms, endpoint, request, None, grouping_keys, SENDER_NOT_REGISTERED
        )
        return _refuse(SENDER_NOT_REGISTERED, f"Sender number {send_no!r} is not registered.")
    is_ad = endpoint.startswith("ad-")
    template = str(body.get("body") or "")
    title = body.get("title")
    kind = "sms"
    if endpoint.endswith("mms"):
        kind = "mms" if body.get("attachFileIdList") else "lms"

    request_id = state.new_request_id()
    if idempotency_key:
        state.remember_idempotency_key(partition, idempotency_key, request_id)
    now = state.now(partition)
    delay = partition.providers[Provider.sms].delivery_delay_ms / 1000
    redelivery = engine_of(request).settings.power_off_redelivery_ms / 1000
    engine = engine_of(request)
    results = []
    for seq, recipient in enumerate(recipients, start=1):
        recipient_no = str(recipient.get("recipientNo", ""))
        parameters = recipient.get("templateParameter") or {}
        text = _fill(template, parameters)
        subject = _fill(str(title), parameters) if title else None
        code, message = "0", "SUCCESS"
        problem = byte_problem(kind, text, subject)
        if not recipient_no.isdigit():
            code, message = INVALID_REQUEST, "Invalid recipientNo."
        elif not text:
            code, message = INVALID_REQUEST, "body is required."
        elif problem:
            code, message = problem
        elif is_ad and (ad_problem := ad_form_problem(partition, text)):
            code, message = AD_FORM_INVALID, ad_problem
        record = Record(
            provider=Provider.sms,
            kind=kind,
            request_id=request_id,
            seq=seq,
            recipient=recipient_no,
            grouping_key=recipient.get("recipientGroupingKey"),
            created_at=now,
            is_ad=is_ad,
            sender=send_no,
            body=text,
            title=subject,
        )
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
            engine.run(partition, record, _stages(partition, record, delay, redelivery), hook)
    log_nhn_submission(
        state, partition, Provider.sms, endpoint, request, request_id, grouping_keys, "accepted"
    )
    return json_response(
        nhn_header(
            0,
            "SUCCESS",
            body={
                "data": {
                    "requestId": request_id,
                    "statusCode": "2",
                    "senderGroupingKey": body.get("senderGroupingKey"),
                    "sendResultList": results,
                }
            },
        )
    )


def _fill(template: str, parameters: Any) -> str:
    if not isinstance(parameters, dict) or "##" not in template:
        return template
    return _PLACEHOLDER.sub(lambda m: str(parameters.get(m.group(1), m.group(0))), template)


def _stages(partition: Partition, record: Record, delay_s: float, redelivery_s: float) -> list[Stage]:
    behaviour = partition.behaviour(record.recipient)
    price = partition.prices[record.kind]
    if behaviour is Behaviour.power_off_then_delivered:
        return [
            Stage(delay_s, "SENDING", "2003", RESULT_NAMES["2003"]),
            Stage(redelivery_s, "COMPLETED", "1000", RESULT_NAMES["1000"], price),
        ]
    code = final_code(partition, record.recipient, is_ad=record.is_ad)
    if code == "1000":
        return [Stage(delay_s, "COMPLETED", code, RESULT_NAMES[code], price)]
    return [Stage(delay_s, "FAILED", code, RESULT_NAMES.get(code, ""))]


def hook(record: Record) -> dict[str, Any]:
    status, status_name = MSG_STATUS[record.status]
    return {
        "hookId": uuid.uuid4().hex,
        "messageType": record.kind.upper(),
        "requestId": record.request_id,
        "recipientSeq": record.seq,
        "recipientNo": record.recipient,
        "sendNo": record.sender,
        "isAd": record.is_ad,
        "msgStatus": status,
        "msgStatusName": status_name,
        "resultCode": record.result_code,
        "resultCodeName": record.result_message,
        "recipientGroupingKey": record.grouping_key,
        "requestDate": record.created_at.isoformat(),
        "receiveDate": record.completed_at.isoformat() if record.completed_at else None,
        "costKrw": record.cost_krw,
    }


def _message(record: Record) -> dict[str, Any]:
    return {**hook(record), "body": record.body, "title": record.title}


def unsubscribe_hook(recipient_no: str, unsubscribe_no: str, at: str) -> dict[str, Any]:
    return {
        "hookId": uuid.uuid4().hex,
        "recipientNo": recipient_no,
        "unsubscribeNo": unsubscribe_no,
        "enterpriseName": "Dasi sandbox",
        "createdDateTime": at,
    }


async def _read_gate(appkey: str, request: Request) -> tuple[Partition, Response | None]:
    state = state_of(request)
    partition = state.partition(appkey)
    try:
        await gate(state, partition, Provider.sms, send=False, throttled=_throttled)
    except Refusal as refusal:
        return partition, refusal.response
    if not _secret_ok(partition, request):
        return partition, _refuse("-1000", "Invalid appKey or secretKey.")
    return partition, None


@router.get(
    "/sms/v3.0/appKeys/{appkey}/sender/{endpoint}/{request_id}",
    operation_id="nhn_sms_message_get",
    summary="One SMS / LMS / MMS result (mtPr: the recipientSeq)",
)
async def message_get(
    appkey: str, endpoint: str, request_id: str, request: Request, mtPr: int = 1
) -> Response:
    partition, refused = await _read_gate(appkey, request)
    if refused:
        return refused
    record = partition.record(request_id, mtPr)
    if record is None or record.provider is not Provider.sms:
        return _refuse("-2008", "Invalid requestId.")
    return json_response(nhn_header(0, "SUCCESS", body={"data": _message(record)}))


@router.get(
    "/sms/v3.0/appKeys/{appkey}/sender/{endpoint}",
    operation_id="nhn_sms_messages_list",
    summary="SMS results by requestId or recipientGroupingKey",
)
async def messages_list(
    appkey: str,
    endpoint: str,
    request: Request,
    requestId: str | None = None,
    recipientGroupingKey: str | None = None,
) -> Response:
    partition, refused = await _read_gate(appkey, request)
    if refused:
        return refused
    if requestId:
        found = partition.records.get(requestId, [])
    elif recipientGroupingKey:
        found = partition.by_grouping_key.get(recipientGroupingKey, [])
    else:
        return _refuse(INVALID_REQUEST, "requestId or recipientGroupingKey is required.")
    data = [_message(r) for r in found if r.provider is Provider.sms]
    return json_response(
        nhn_header(
            0, "SUCCESS", body={"pageNum": 1, "pageSize": len(data), "totalCount": len(data), "data": data}
        )
    )
