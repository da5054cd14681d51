"""Delivery-report webhooks: signature verified, idempotent, accepted in any order (a report that
comes before its submission was recorded is kept and applied later), opt-outs suppressed at once,
and the email one-click unsubscribe (RFC 8058)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select

from services.dispatcher.message_models import DeliveryReport
from services.dispatcher.models import Suppression
from shared.db import session_scope
from tests.dispatcher.pipeline_support import (
    OPT_OUT,
    WEBHOOK_SECRET,
    attempts_of,
    batch,
    dispatcher_for,
    dispatcher_http,
    eventually,
    make_shop,
    make_shopper,
    message_of,
    no_retry_waits,  # noqa: F401  (autouse fixture)
    request,
    sandbox,  # noqa: F401  (fixture)
)


def _signed(body: dict[str, Any], secret: str = WEBHOOK_SECRET) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body, ensure_ascii=False).encode()
    signature = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"X-Toast-Webhook-Signature": signature, "Content-Type": "application/json"}


def _kakao_hook(ref: str, *, status: str, code: str, resend: str | None, cost: int = 0) -> dict[str, Any]:
    prefix, _, rest = ref.partition(":")
    request_id, _, seq = rest.partition("/")
    return {
        "event": "MESSAGE_RESULT_UPDATE",
        "hooks": [
            {
                "messageType": prefix.upper(),
                "requestId": request_id,
                "recipientSeq": int(seq),
                "recipientNo": "01012345678",
                "messageStatus": status,
                "resultCode": code,
                "resendStatus": resend,
                "resendResultCode": "1000" if resend == "RSC04" else None,
                "costKrw": cost,
                "receiveDate": "2026-11-23T10:00:05+09:00",
            }
        ],
    }


async def test_bad_signature_is_refused(settings, db, clock, sandbox):  # noqa: F811
    async with dispatcher_http(settings, clock, sandbox) as url, httpx.AsyncClient(base_url=url) as http:
        raw, headers = _signed({"event": "MESSAGE_RESULT_UPDATE", "hooks": []}, secret="wrong")
        r = await http.post("/v1/webhooks/nhn-sms", content=raw, headers=headers)
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")
        r = await http.post("/v1/webhooks/carrier-pigeon", content=raw, headers=headers)
        assert r.status_code == 404


async def test_report_before_its_submission_is_recorded_is_not_lost(settings, db, clock, sandbox):  # noqa: F811
    """The sandbox reports at once; the worker records the submission only after the report came."""
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())

    async def wait_for_the_report(provider: str, subs: object) -> None:
        async def arrived() -> bool:
            async with session_scope(db) as session:
                return (await session.scalar(select(DeliveryReport.id).limit(1))) is not None

        await eventually(arrived)

    async with dispatcher_http(settings, clock, sandbox), dispatcher_for(settings, db, clock, sandbox) as d:
        d.after_submit = wait_for_the_report
        [mid] = await d.dispatch(
            batch(shop, request("k1", ["sms"], profile_id=pid, template_id=shop.templates["sms_info"]))
        )
    assert (await message_of(db, mid)).status == "delivered"
    async with session_scope(db) as session:
        [report] = (await session.execute(select(DeliveryReport))).scalars().all()
        assert report.applied_at is not None


async def test_reports_are_idempotent_and_accepted_in_any_order(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    await sandbox.script("01012345678", "not_kakao_user")
    r = await sandbox.client.put(  # the sandbox's own report goes nowhere, once: the test sends its own
        f"/sandbox/{sandbox.appkey}/webhooks/kakao",
        json={"url": "http://127.0.0.1:9/nowhere", "secret": WEBHOOK_SECRET, "max_attempts": 1},
    )
    r.raise_for_status()
    chain = {"friendtalk": shop.templates["friendtalk_ad"], "sms": shop.templates["sms_ad"]}
    async with dispatcher_for(settings, db, clock, sandbox) as d:
        [mid] = await d.dispatch(
            batch(shop, request("k1", ["friendtalk", "sms"], profile_id=pid, templates=chain))
        )
    [attempt] = await attempts_of(db, mid)
    assert attempt.provider_fallback and attempt.provider_ref
    final = _kakao_hook(attempt.provider_ref, status="FAILED", code="3019", resend="RSC04", cost=15)
    interim = _kakao_hook(attempt.provider_ref, status="FAILED", code="3019", resend="RSC03")
    async with dispatcher_http(settings, clock, sandbox) as url, httpx.AsyncClient(base_url=url) as http:
        for body in (final, final, interim):  # the final word twice, then a late interim one
            raw, headers = _signed(body)
            r = await http.post("/v1/webhooks/nhn-kakao", content=raw, headers=headers)
            assert r.status_code == 200, r.text
    message = await message_of(db, mid)
    assert (message.status, message.channel, message.cost_krw) == ("delivered_via_fallback", "sms", 15)
    [attempt] = await attempts_of(db, mid)
    assert attempt.resend_status == "RSC04"
    async with session_scope(db) as session:
        reports = (await session.execute(select(DeliveryReport))).scalars().all()
    assert len(reports) == 2  # the repeat was dropped; the interim one kept, changing nothing


async def test_080_opt_out_webhook_suppresses_at_once(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    async with dispatcher_http(settings, clock, sandbox):
        r = await sandbox.client.post(
            f"/sandbox/{sandbox.appkey}/sms/unsubscribe",
            json={"recipient_no": "01055556666", "unsubscribe_no": OPT_OUT},
        )
        assert r.status_code == 204

        async def suppressed() -> bool:
            async with session_scope(db) as session:
                row = await session.scalar(
                    select(Suppression).where(Suppression.workspace_id == shop.workspace_id)
                )
                return row is not None and row.address == "01055556666" and row.source == "080"

        await eventually(suppressed)


async def test_email_one_click_unsubscribe(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now(), email="minji@example.com")
    async with dispatcher_for(settings, db, clock, sandbox) as d:
        [first] = await d.dispatch(
            batch(shop, request("k1", ["email"], profile_id=pid, template_id=shop.templates["email_ad"]))
        )
    [held] = await sandbox.messages("email")
    headers = {k.lower(): v for k, v in held["headers"].items()}
    link = headers["list-unsubscribe"].split(",")[0].strip().strip("<>")
    path = link[link.index("/v1/unsubscribe/") :]
    async with dispatcher_http(settings, clock, sandbox) as url, httpx.AsyncClient(base_url=url) as http:
        r = await http.post(path, content=b"List-Unsubscribe=One-Click")
        assert r.status_code == 200
        r = await http.post(path[:-3] + "abc", content=b"List-Unsubscribe=One-Click")
        assert r.status_code == 404  # a forged link changes nothing
    async with dispatcher_for(settings, db, clock, sandbox) as d:
        [second] = await d.dispatch(
            batch(shop, request("k2", ["email"], profile_id=pid, template_id=shop.templates["email_ad"]))
        )
    message = await message_of(db, second)
    assert (message.status, message.reason) == ("skipped", "email: suppressed")
    assert (await message_of(db, first)).status in ("sent", "delivered")


async def test_an_interim_report_does_not_resend(settings, db, clock, sandbox):  # noqa: F811
    """Handset off (SMS 2003) then delivered: the provider retries, the dispatcher waits."""
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    await sandbox.script("01012345678", "power_off_then_delivered")
    async with dispatcher_http(settings, clock, sandbox), dispatcher_for(settings, db, clock, sandbox) as d:
        [mid] = await d.dispatch(
            batch(shop, request("k1", ["sms"], profile_id=pid, template_id=shop.templates["sms_info"]))
        )

        async def delivered() -> bool:
            return (await message_of(db, mid)).status == "delivered"

        await eventually(delivered)
    [attempt] = await attempts_of(db, mid)
    assert attempt.code == "1000"
    assert len(await sandbox.submissions("sms")) == 1


async def test_a_lost_report_is_polled(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    async with dispatcher_for(settings, db, clock, sandbox) as d:  # no webhook target: reports are lost
        [mid] = await d.dispatch(
            batch(shop, request("k1", ["sms"], profile_id=pid, template_id=shop.templates["sms_info"]))
        )
        assert (await message_of(db, mid)).status == "sent"
        assert await d.poll_pending() == 0  # too early to ask
        clock.advance(timedelta(minutes=11))
        assert await d.poll_pending() == 1
    message = await message_of(db, mid)
    assert (message.status, message.cost_krw) == ("delivered", 15)


async def test_email_unsubscribe_event_suppresses_at_once(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now(), email="minji@example.com")
    async with dispatcher_http(settings, clock, sandbox), dispatcher_for(settings, db, clock, sandbox) as d:
        await d.dispatch(
            batch(shop, request("k1", ["email"], profile_id=pid, template_id=shop.templates["email_ad"]))
        )
        r = await sandbox.client.post(
            f"/sandbox/{sandbox.appkey}/email/unsubscribe", json={"email": "minji@example.com"}
        )
        assert r.status_code == 204

        async def suppressed() -> bool:
            async with session_scope(db) as session:
                row = await session.scalar(
                    select(Suppression).where(
                        Suppression.workspace_id == shop.workspace_id, Suppression.channel == "email"
                    )
                )
                return row is not None and row.address == "minji@example.com"

        await eventually(suppressed)
