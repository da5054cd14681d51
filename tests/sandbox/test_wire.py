"""The sandbox's own wire behaviour, spoken to over real HTTP as a provider client would."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from shared.testing.sandbox import Sandbox, WebhookReceiver

SENDER_KEY = "dasi-sandbox-sender-key"
SEND_NO = "15990000"


async def _alimtalk(sandbox: Sandbox, recipients: list[dict[str, Any]], **headers: str) -> dict[str, Any]:
    response = await sandbox.client.post(
        f"/alimtalk/v2.3/appkeys/{sandbox.appkey}/messages",
        headers={"X-Secret-Key": sandbox.secret_key, **headers},
        json={"senderKey": SENDER_KEY, "templateCode": "ORDER_SHIPPED", "recipientList": recipients},
    )
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def _sms(sandbox: Sandbox, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await sandbox.client.post(
        f"/sms/v3.0/appKeys/{sandbox.appkey}/sender/{endpoint}",
        headers={"X-Secret-Key": sandbox.secret_key},
        json={"sendNo": SEND_NO, **body},
    )
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


async def test_alimtalk_is_accepted_then_delivered_and_polled_with_its_price(sandbox: Sandbox) -> None:
    answer = await _alimtalk(
        sandbox,
        [
            {
                "recipientNo": "01012345678",
                "templateParameter": {"이름": "김다시"},
                "recipientGroupingKey": "k-1",
            }
        ],
    )

    assert answer["header"] == {"resultCode": 0, "resultMessage": "SUCCESS", "isSuccessful": True}
    sent = answer["message"]["sendResults"]
    assert sent == [
        {
            "recipientSeq": 1,
            "recipientNo": "01012345678",
            "resultCode": 0,
            "resultMessage": "SUCCESS",
            "recipientGroupingKey": "k-1",
        }
    ]
    request_id = answer["message"]["requestId"]
    polled = await sandbox.client.get(
        f"/alimtalk/v2.3/appkeys/{sandbox.appkey}/messages/{request_id}/1",
        headers={"X-Secret-Key": sandbox.secret_key},
    )
    message = polled.json()["message"]
    assert (message["messageStatus"], message["resultCode"], message["costKrw"]) == ("COMPLETED", "1000", 9)
    listed = await sandbox.client.get(
        f"/alimtalk/v2.3/appkeys/{sandbox.appkey}/messages",
        params={"recipientGroupingKey": "k-1"},
        headers={"X-Secret-Key": sandbox.secret_key},
    )
    assert [m["requestId"] for m in listed.json()["messages"]] == [request_id]
    assert (await sandbox.costs())["by_kind"] == {"alimtalk": 9}


async def test_wrong_secret_and_unregistered_sender_key_are_refused_in_nhn_form(sandbox: Sandbox) -> None:
    wrong = await sandbox.client.post(
        f"/alimtalk/v2.3/appkeys/{sandbox.appkey}/messages",
        headers={"X-Secret-Key": "wrong-secret"},
        json={
            "senderKey": SENDER_KEY,
            "templateCode": "T",
            "recipientList": [{"recipientNo": "01000000000"}],
        },
    )
    assert wrong.json()["header"]["resultCode"] == -1004

    unregistered = await sandbox.client.post(
        f"/friendtalk/v2.4/appkeys/{sandbox.appkey}/messages",
        headers={"X-Secret-Key": sandbox.secret_key},
        json={
            "senderKey": "모르는-키",
            "recipientList": [{"recipientNo": "01000000000", "content": "안녕하세요"}],
        },
    )
    assert unregistered.status_code == 200
    assert unregistered.json()["header"] == {
        "resultCode": 1003,
        "resultMessage": "Invalid sender key (not registered).",
        "isSuccessful": False,
    }


async def test_idempotency_key_reused_within_ten_minutes_is_refused(sandbox: Sandbox) -> None:
    recipients = [{"recipientNo": "01012345678", "recipientGroupingKey": "k-1"}]
    first = await _alimtalk(sandbox, recipients, **{"X-NC-API-IDEMPOTENCY-KEY": "same-key"})
    again = await _alimtalk(sandbox, recipients, **{"X-NC-API-IDEMPOTENCY-KEY": "same-key"})

    assert first["header"]["isSuccessful"] is True
    assert again["header"]["resultCode"] == -1005
    answers = [s["answer"] for s in await sandbox.submissions("kakao")]
    assert answers == ["accepted", "-1005"]
    assert len(await sandbox.messages(grouping_key="k-1")) == 1


async def test_friendtalk_outside_kakao_hours_reports_3022_without_fallback(sandbox: Sandbox) -> None:
    await sandbox.set_clock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))  # 21:00 in Seoul
    response = await sandbox.client.post(
        f"/friendtalk/v2.4/appkeys/{sandbox.appkey}/messages",
        headers={"X-Secret-Key": sandbox.secret_key},
        json={
            "senderKey": SENDER_KEY,
            "recipientList": [
                {
                    "recipientNo": "01012345678",
                    "content": "(광고) 주말 특가 안내",
                    "isAd": True,
                    "resendParameter": {
                        "isResend": True,
                        "resendContent": "(광고) 주말 특가",
                        "resendSendNo": SEND_NO,
                    },
                }
            ],
        },
    )
    assert response.json()["message"]["sendResults"][0]["resultCode"] == 0

    [message] = await sandbox.messages()
    assert (message["status"], message["result_code"], message["resend_status"]) == (
        "FAILED",
        "3022",
        "RSC01",
    )
    assert message["cost_krw"] == 0

    await sandbox.set_clock(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))  # 11:00 in Seoul
    await sandbox.client.post(
        f"/friendtalk/v2.4/appkeys/{sandbox.appkey}/messages",
        headers={"X-Secret-Key": sandbox.secret_key},
        json={
            "senderKey": SENDER_KEY,
            "recipientList": [{"recipientNo": "01012345678", "content": "주말 특가"}],
        },
    )
    assert [m["result_code"] for m in await sandbox.messages()] == ["3022", "1000"]


async def test_kakao_recipient_scripts_and_provider_fallback(sandbox: Sandbox) -> None:
    await sandbox.script("01000000001", "not_friend")
    await sandbox.script("01000000002", "not_kakao_user")
    await sandbox.script("01000000003", "bad_number")
    fallback = {
        "isResend": True,
        "resendType": "SMS",
        "resendContent": "주문하신 상품이 출발했어요",
        "resendSendNo": SEND_NO,
    }
    await sandbox.client.post(
        f"/friendtalk/v2.4/appkeys/{sandbox.appkey}/messages",
        headers={"X-Secret-Key": sandbox.secret_key},
        json={
            "senderKey": SENDER_KEY,
            "recipientList": [
                {
                    "recipientNo": "01000000001",
                    "content": "안녕하세요",
                    "isAd": False,
                    "resendParameter": fallback,
                },
                {"recipientNo": "01000000002", "content": "안녕하세요", "isAd": False},
                {
                    "recipientNo": "01000000003",
                    "content": "안녕하세요",
                    "isAd": False,
                    "resendParameter": fallback,
                },
                {"recipientNo": "01000000004", "content": "안녕하세요", "isAd": False},
            ],
        },
    )

    found = {m["recipient"]: m for m in await sandbox.messages()}
    assert (found["01000000001"]["result_code"], found["01000000001"]["resend_status"]) == ("2003", "RSC04")
    assert found["01000000001"]["cost_krw"] == 15  # the fallback SMS, at the SMS price
    assert (found["01000000002"]["result_code"], found["01000000002"]["resend_status"]) == ("3019", None)
    assert (found["01000000003"]["resend_status"], found["01000000003"]["resend_result_code"]) == (
        "RSC05",
        "3003",
    )
    assert (found["01000000004"]["result_code"], found["01000000004"]["cost_krw"]) == ("1000", 20)


async def test_brand_message_reaches_non_friends_at_the_non_friend_price(sandbox: Sandbox) -> None:
    await sandbox.script("01000000001", "not_friend")
    for targeting in ("I", "M"):
        await sandbox.client.post(
            f"/brand-message/v1.0/appkeys/{sandbox.appkey}/messages",
            headers={"X-Secret-Key": sandbox.secret_key},
            json={
                "senderKey": SENDER_KEY,
                "targeting": targeting,
                "recipientList": [{"recipientNo": "01000000001", "content": "(광고) 신상품 입고"}],
            },
        )
    assert [(m["result_code"], m["cost_krw"]) for m in await sandbox.messages()] == [
        ("2003", 0),
        ("1000", 35),
    ]


async def test_sms_sender_number_must_be_registered(sandbox: Sandbox) -> None:
    response = await sandbox.client.post(
        f"/sms/v3.0/appKeys/{sandbox.appkey}/sender/sms",
        headers={"X-Secret-Key": sandbox.secret_key},
        json={
            "sendNo": "0212345678",
            "body": "안녕하세요",
            "recipientList": [{"recipientNo": "01012345678"}],
        },
    )
    assert response.json()["header"]["isSuccessful"] is False
    assert response.json()["header"]["resultCode"] == -2018

    await sandbox.register(sender_numbers=["0212345678"])
    again = await sandbox.client.post(
        f"/sms/v3.0/appKeys/{sandbox.appkey}/sender/sms",
        headers={"X-Secret-Key": sandbox.secret_key},
        json={
            "sendNo": "0212345678",
            "body": "안녕하세요",
            "recipientList": [{"recipientNo": "01012345678"}],
        },
    )
    assert again.json()["header"]["isSuccessful"] is True


async def test_euc_kr_byte_limits_are_enforced_per_recipient(sandbox: Sandbox) -> None:
    forty_five = "가" * 45  # 90 bytes in EUC-KR: the most an SMS takes
    answer = await _sms(
        sandbox,
        "sms",
        {
            "body": "##b##",
            "recipientList": [
                {"recipientNo": "01000000001", "templateParameter": {"b": forty_five}},
                {"recipientNo": "01000000002", "templateParameter": {"b": forty_five + "a"}},
                {"recipientNo": "01000000003", "templateParameter": {"b": "이모지 😀"}},
            ],
        },
    )
    codes = [r["resultCode"] for r in answer["body"]["data"]["sendResultList"]]
    assert codes == [0, -2014, -2016]

    long_title = await _sms(
        sandbox,
        "mms",
        {"title": "가" * 21, "body": "나" * 1000, "recipientList": [{"recipientNo": "01000000001"}]},
    )
    assert long_title["body"]["data"]["sendResultList"][0]["resultCode"] == -2015
    lms = await _sms(
        sandbox,
        "mms",
        {"title": "가" * 20, "body": "나" * 1000, "recipientList": [{"recipientNo": "01000000001"}]},
    )
    assert lms["body"]["data"]["sendResultList"][0]["resultCode"] == 0
    assert (await sandbox.costs())["by_kind"] == {"sms": 15, "lms": 40}


async def test_ad_sms_must_be_in_ad_form_with_a_registered_080_number(sandbox: Sandbox) -> None:
    good = "(광고)다시 스토어\n주말 쿠폰 도착\n무료수신거부 080-123-4567"
    cases = {
        "01000000001": good,
        "01000000002": "[광고]다시 스토어\n무료수신거부 080-123-4567",
        "01000000003": "(광고)다시 스토어 주말 쿠폰",
        "01000000004": "(광고)다시 스토어\n무료수신거부 080-999-9999",
    }
    answer = await _sms(
        sandbox,
        "ad-sms",
        {
            "body": "##b##",
            "recipientList": [
                {"recipientNo": no, "templateParameter": {"b": text}} for no, text in cases.items()
            ],
        },
    )
    assert [r["resultCode"] for r in answer["body"]["data"]["sendResultList"]] == [0, -2021, -2021, -2021]


async def test_sms_scripts_power_off_then_delivered_and_080_opt_out(
    sandbox: Sandbox, webhook_receiver: WebhookReceiver
) -> None:
    await sandbox.webhook("sms", webhook_receiver.url, secret="문자-비밀")
    await sandbox.script("01000000001", "power_off_then_delivered")
    await sandbox.script("01000000002", "opted_out_080")
    await sandbox.script("01000000003", "bad_number")
    ad = "(광고)다시 스토어 쿠폰\n무료수신거부 080-123-4567"
    await _sms(
        sandbox,
        "ad-sms",
        {"body": ad, "recipientList": [{"recipientNo": f"0100000000{i}"} for i in (1, 2, 3)]},
    )

    hooks: list[dict[str, Any]] = []
    while not any(h["recipientNo"] == "01000000001" and h["resultCode"] == "1000" for h in hooks):
        calls = await webhook_receiver.wait_for(len(webhook_receiver.accepted) + 1)
        hooks = [h for c in calls for h in orjson.loads(c.body)["hooks"]]
    by_no: dict[str, list[str]] = {}
    for hook in hooks:
        by_no.setdefault(hook["recipientNo"], []).append(hook["resultCode"])
    assert by_no == {"01000000001": ["2003", "1000"], "01000000002": ["-6001"], "01000000003": ["3003"]}


async def test_080_opt_out_emits_an_unsubscribe_event_and_blocks_later_ads(
    sandbox: Sandbox, webhook_receiver: WebhookReceiver
) -> None:
    await sandbox.webhook("sms", webhook_receiver.url, secret="문자-비밀")
    await sandbox.opt_out_080("01055556666")

    [call] = await webhook_receiver.wait_for(1)
    envelope = orjson.loads(call.body)
    assert envelope["event"] == "UNSUBSCRIBE"
    assert envelope["hooks"][0]["recipientNo"] == "01055556666"
    assert envelope["hooks"][0]["unsubscribeNo"] == "0801234567"

    ad = "(광고)다시 스토어 쿠폰\n무료수신거부 080-123-4567"
    await _sms(sandbox, "ad-sms", {"body": ad, "recipientList": [{"recipientNo": "01055556666"}]})
    await _sms(
        sandbox, "sms", {"body": "주문이 출발했어요", "recipientList": [{"recipientNo": "01055556666"}]}
    )
    assert [m["result_code"] for m in await sandbox.messages()] == ["-6001", "1000"]


async def test_webhook_is_signed_and_retried_until_200(
    sandbox: Sandbox, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.statuses = [500, 503]
    await sandbox.webhook("kakao", webhook_receiver.url, secret="카카오-비밀")
    await _alimtalk(sandbox, [{"recipientNo": "01012345678", "recipientGroupingKey": "k-1"}])

    [delivered] = await webhook_receiver.wait_for(1)
    assert [c.status for c in webhook_receiver.calls] == [500, 503, 200]
    assert len({c.body for c in webhook_receiver.calls}) == 1  # the same call, retried
    expected = hmac.new("카카오-비밀".encode(), delivered.body, hashlib.sha256).hexdigest()
    assert delivered.headers["x-toast-webhook-signature"] == expected
    envelope = orjson.loads(delivered.body)
    assert envelope["event"] == "MESSAGE_RESULT_UPDATE"
    assert envelope["appKey"] == sandbox.appkey
    assert envelope["hooks"][0]["recipientGroupingKey"] == "k-1"
    assert [(a["attempt"], a["status"]) for a in await sandbox.webhook_log()] == [
        (1, 500),
        (2, 503),
        (3, 200),
    ]


async def test_webhook_gives_up_after_max_attempts(
    sandbox: Sandbox, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.statuses = [500] * 10
    await sandbox.webhook("kakao", webhook_receiver.url, secret="s", max_attempts=3, backoff_s=0.001)
    await _alimtalk(sandbox, [{"recipientNo": "01012345678"}])

    await webhook_receiver.wait_for(3, accepted=False)
    log: list[dict[str, Any]] = []
    for _ in range(50):
        log = await sandbox.webhook_log()
        if len(log) == 3:
            break
    assert [a["status"] for a in log] == [500, 500, 500]
    assert len(webhook_receiver.calls) == 3


async def test_appkeys_are_isolated(sandbox_server: Any) -> None:
    async with httpx.AsyncClient(base_url=sandbox_server.base_url) as client:
        a = Sandbox(sandbox_server.base_url, "격리-a", "sa", client)
        b = Sandbox(sandbox_server.base_url, "격리-b", "sb", client)
        for handle in (a, b):
            await client.delete(f"/sandbox/{handle.appkey}")
            await handle.register(secret_key=handle.secret_key)
        await a.script("01012345678", "not_kakao_user")
        await a.provider("kakao", outage=True)
        down = await client.post(
            f"/alimtalk/v2.3/appkeys/{a.appkey}/messages",
            headers={"X-Secret-Key": "sa"},
            json={
                "senderKey": SENDER_KEY,
                "templateCode": "T",
                "recipientList": [{"recipientNo": "01012345678"}],
            },
        )
        up = await client.post(
            f"/alimtalk/v2.3/appkeys/{b.appkey}/messages",
            headers={"X-Secret-Key": "sb"},
            json={
                "senderKey": SENDER_KEY,
                "templateCode": "T",
                "recipientList": [{"recipientNo": "01012345678"}],
            },
        )
        cross = await client.post(
            f"/alimtalk/v2.3/appkeys/{b.appkey}/messages",
            headers={"X-Secret-Key": "sa"},
            json={
                "senderKey": SENDER_KEY,
                "templateCode": "T",
                "recipientList": [{"recipientNo": "01012345678"}],
            },
        )

        assert down.status_code == 503
        assert up.json()["header"]["isSuccessful"] is True
        assert cross.json()["header"]["resultCode"] == -1004
        assert [m["result_code"] for m in await b.messages()] == ["1000"]  # a's script did not leak
        assert await a.messages() == []
        for handle in (a, b):
            await client.delete(f"/sandbox/{handle.appkey}")


async def test_provider_behaviour_latency_errors_and_throttling(sandbox: Sandbox) -> None:
    body = {"senderKey": SENDER_KEY, "templateCode": "T", "recipientList": [{"recipientNo": "01012345678"}]}
    url = f"/alimtalk/v2.3/appkeys/{sandbox.appkey}/messages"
    headers = {"X-Secret-Key": sandbox.secret_key}

    await sandbox.provider("kakao", rate_limited=True, retry_after_s=3)
    throttled = await sandbox.client.post(url, headers=headers, json=body)
    assert throttled.json()["header"]["resultCode"] == 4156
    assert throttled.headers["retry-after"] == "3"

    await sandbox.provider("kakao", rate_limited=False, error_rate=1.0)
    assert (await sandbox.client.post(url, headers=headers, json=body)).status_code == 500

    await sandbox.provider("kakao", error_rate=0.0, rate_limit_per_s=1)
    answers = [
        (await sandbox.client.post(url, headers=headers, json=body)).json()["header"]["resultCode"]
        for _ in "ab"
    ]
    assert 4156 in answers

    await sandbox.provider("fcm", rate_limited=True, retry_after_s=2)
    push = await sandbox.client.post(
        f"/v1/projects/{sandbox.appkey}/messages:send",
        headers={"Authorization": f"Bearer {sandbox.secret_key}"},
        json={"message": {"token": "토큰", "notification": {"body": "안녕"}}},
    )
    assert (push.status_code, push.headers["retry-after"]) == (429, "2")
    assert push.json()["error"]["details"][0]["errorCode"] == "QUOTA_EXCEEDED"


async def test_fcm_and_email_wire_shapes(sandbox: Sandbox, webhook_receiver: WebhookReceiver) -> None:
    await sandbox.script("bad-token", "invalid_push_token")
    auth = {"Authorization": f"Bearer {sandbox.secret_key}"}
    ok = await sandbox.client.post(
        f"/v1/projects/{sandbox.appkey}/messages:send",
        headers=auth,
        json={
            "message": {
                "token": "good-token",
                "notification": {"title": "다시", "body": "장바구니를 잊으셨어요"},
            }
        },
    )
    gone = await sandbox.client.post(
        f"/v1/projects/{sandbox.appkey}/messages:send",
        headers=auth,
        json={"message": {"token": "bad-token", "notification": {"body": "안녕"}}},
    )
    too_big = await sandbox.client.post(
        f"/v1/projects/{sandbox.appkey}/messages:send",
        headers=auth,
        json={"message": {"token": "good-token", "data": {"x": "가" * 2000}}},
    )
    assert ok.json()["name"].startswith(f"projects/{sandbox.appkey}/messages/")
    assert (gone.status_code, gone.json()["error"]["details"][0]["errorCode"]) == (404, "UNREGISTERED")
    assert (too_big.status_code, too_big.json()["error"]["status"]) == (400, "INVALID_ARGUMENT")

    await sandbox.webhook("email", webhook_receiver.url, secret="메일-비밀")
    await sandbox.script("bounce@example.kr", "bounce")
    sent = await sandbox.client.post(
        "/v3/mail/send",
        headers={"Authorization": f"Bearer {sandbox.appkey}"},
        json={
            "personalizations": [
                {
                    "to": [{"email": "kim@example.kr"}, {"email": "bounce@example.kr"}],
                    "custom_args": {"c": "1"},
                }
            ],
            "from": {"email": "store@example.kr"},
            "subject": "(광고) 다시 스토어 주말 쿠폰",
            "content": [{"type": "text/plain", "value": "쿠폰이 도착했어요"}],
            "headers": {
                "List-Unsubscribe": "<https://dasi.example/u/abc>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
        },
    )
    assert sent.status_code == 202
    message_id = sent.headers["x-message-id"]
    [call] = await webhook_receiver.wait_for(1)
    events = orjson.loads(call.body)
    assert isinstance(events, list)
    assert sorted(e["event"] for e in events) == ["bounce", "delivered"]
    assert {e["sg_message_id"].split(".")[0] for e in events} == {message_id}
    assert all(e["c"] == "1" for e in events)
    recorded = await sandbox.messages(provider="email")
    assert recorded[0]["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
