"""The send pipeline against the provider sandbox over HTTP: each channel's happy path, fallbacks
(immediate and by delivery report), no double SMS when the provider falls back itself, the policies
(night, consent, suppression, unapproved alimtalk), cost per message, idempotent requests.

Delivery reports come as the sandbox's signed webhooks to the dispatcher app (real HTTP); a fallback
a report asks for is sent by a real arq worker in burst mode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from services.dispatcher.message_models import Message
from services.dispatcher.suppressions import NewSuppression, add_suppressions
from shared.db import session_scope
from tests.dispatcher.pipeline_support import (
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
    run_worker,
    sandbox,  # noqa: F401  (fixture)
    status_is,
)

# --- each channel's happy path --------------------------------------------------------------------


async def test_sms_delivered_with_channel_and_cost(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    async with dispatcher_http(settings, clock, sandbox), dispatcher_for(settings, db, clock, sandbox) as d:
        [mid] = await d.dispatch(
            batch(shop, request("k1", ["sms"], profile_id=pid, template_id=shop.templates["sms_info"]))
        )
        await eventually(lambda: status_is(db, mid, "delivered"))
    message = await message_of(db, mid)
    assert (message.channel, message.cost_krw, message.reason) == ("sms", 15, None)
    [attempt] = await attempts_of(db, mid)
    assert (attempt.provider, attempt.state, attempt.outcome) == ("nhn-sms", "done", "delivered")
    [held] = await sandbox.messages("sms")
    assert held["recipient"] == "01012345678"
    assert held["body"] == "김민지님, 주문하신 수분크림이(가) 발송되었습니다."


async def test_alimtalk_delivered(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now(), friend=False)
    async with dispatcher_http(settings, clock, sandbox), dispatcher_for(settings, db, clock, sandbox) as d:
        [mid] = await d.dispatch(
            batch(shop, request("k1", ["alimtalk"], profile_id=pid, template_id=shop.templates["alimtalk"]))
        )
        await eventually(lambda: status_is(db, mid, "delivered"))
    message = await message_of(db, mid)
    assert (message.channel, message.cost_krw) == ("alimtalk", 9)
    [held] = await sandbox.messages("kakao")
    assert held["kind"] == "alimtalk"


async def test_friendtalk_ad_delivered(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    async with dispatcher_http(settings, clock, sandbox), dispatcher_for(settings, db, clock, sandbox) as d:
        [mid] = await d.dispatch(
            batch(
                shop,
                request(
                    "k1", ["friendtalk", "sms"], profile_id=pid, template_id=shop.templates["friendtalk_ad"]
                ),
            )
        )
        await eventually(lambda: status_is(db, mid, "delivered"))
    message = await message_of(db, mid)
    assert (message.channel, message.cost_krw) == ("friendtalk", 20)
    [held] = await sandbox.messages("kakao")
    assert held["is_ad"] and held["body"].startswith("김민지님, 장바구니에 담은 수분크림")
    assert await sandbox.messages("sms") == []


async def test_push_sent(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now(), push_token="fcm-token-1")
    async with dispatcher_for(settings, db, clock, sandbox) as d:
        [mid] = await d.dispatch(
            batch(shop, request("k1", ["push", "sms"], profile_id=pid, template_id=shop.templates["push_ad"]))
        )
    message = await message_of(db, mid)
    assert message.status in ("sent", "delivered") and message.channel == "push"
    [held] = await sandbox.messages("fcm")
    assert held["title"].startswith("(광고)")
    assert await sandbox.messages("sms") == []


async def test_email_ad_carries_one_click_unsubscribe(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now(), email="minji@example.com")
    async with dispatcher_for(settings, db, clock, sandbox) as d:
        [mid] = await d.dispatch(
            batch(shop, request("k1", ["email"], profile_id=pid, template_id=shop.templates["email_ad"]))
        )
    message = await message_of(db, mid)
    assert message.status in ("sent", "delivered") and message.channel == "email"
    [held] = await sandbox.messages("email")
    assert held["title"].startswith("(광고)")
    headers = {k.lower(): v for k, v in held["headers"].items()}
    assert "/v1/unsubscribe/" in headers["list-unsubscribe"]
    assert headers["list-unsubscribe-post"] == "List-Unsubscribe=One-Click"


# --- fallback ------------------------------------------------------------------------------------


async def test_immediate_fallback_push_to_sms_on_invalid_token(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now(), push_token="stale-token")
    await sandbox.script("stale-token", "invalid_push_token")
    async with dispatcher_for(settings, db, clock, sandbox) as d:
        [mid] = await d.dispatch(
            batch(
                shop,
                request(
                    "k1",
                    ["push", "sms"],
                    profile_id=pid,
                    templates={"push": shop.templates["push_ad"], "sms": shop.templates["sms_ad"]},
                ),
            )
        )
    message = await message_of(db, mid)
    assert (message.status, message.channel) == ("sent", "sms")
    push, sms = await attempts_of(db, mid)
    assert (push.channel, push.outcome) == ("push", "unreachable")
    assert (sms.channel, sms.outcome) == ("sms", "accepted")
    [held] = await sandbox.messages("sms")
    # an ad SMS carries the ad form (C4-C6)
    assert held["body"].startswith("(광고)다시 스토어\n") and held["body"].endswith(
        "무료수신거부 080-123-4567"
    )


async def test_fallback_by_delivery_report_sends_our_own_sms(settings, db, clock, sandbox):  # noqa: F811
    """Provider fallback off: friendtalk reported undeliverable (2003) -> our SMS, in ad form."""
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    await sandbox.script("01012345678", "not_friend")
    async with (
        dispatcher_http(settings, clock, sandbox),
        dispatcher_for(settings, db, clock, sandbox, provider_fallback=False) as d,
    ):
        [mid] = await d.dispatch(
            batch(
                shop,
                request(
                    "k1",
                    ["friendtalk", "sms"],
                    profile_id=pid,
                    templates={
                        "friendtalk": shop.templates["friendtalk_ad"],
                        "sms": shop.templates["sms_ad"],
                    },
                ),
            )
        )
        await eventually(lambda: status_is(db, mid, "queued"))  # the report moved it on
        await run_worker(settings, clock, sandbox, provider_fallback=False)
        await eventually(lambda: status_is(db, mid, "delivered_via_fallback"))
    message = await message_of(db, mid)
    assert (message.channel, message.cost_krw) == ("sms", 15)  # the failed friendtalk costs nothing
    kakao, sms = await attempts_of(db, mid)
    assert (kakao.outcome, kakao.code) == ("unreachable", "2003")
    assert sms.outcome == "delivered"
    [held] = await sandbox.messages("sms")
    assert held["is_ad"] and held["body"].startswith("(광고)")


async def test_no_double_sms_when_the_provider_falls_back(settings, db, clock, sandbox):  # noqa: F811
    """Provider fallback on: NHN sends the SMS itself (RSC04); the dispatcher sends none."""
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    await sandbox.script("01012345678", "not_kakao_user")
    async with dispatcher_http(settings, clock, sandbox), dispatcher_for(settings, db, clock, sandbox) as d:
        [mid] = await d.dispatch(
            batch(
                shop,
                request(
                    "k1",
                    ["friendtalk", "sms"],
                    profile_id=pid,
                    templates={
                        "friendtalk": shop.templates["friendtalk_ad"],
                        "sms": shop.templates["sms_ad"],
                    },
                ),
            )
        )
        await eventually(lambda: status_is(db, mid, "delivered_via_fallback"))
        await run_worker(settings, clock, sandbox)  # nothing for it to do
    message = await message_of(db, mid)
    assert message.channel == "sms" and message.cost_krw == 15  # billed at the SMS price
    [attempt] = await attempts_of(db, mid)
    assert attempt.provider_fallback and attempt.resend_status == "RSC04"
    assert await sandbox.submissions("sms") == []  # never a second SMS (C14)
    [kakao] = await sandbox.messages("kakao")
    assert kakao["resend_status"] == "RSC04"


# --- policies ------------------------------------------------------------------------------------


async def test_night_ad_is_deferred_to_morning_then_sent(settings, db, clock, sandbox):  # noqa: F811
    clock.set(datetime(2026, 11, 23, 13, 30, tzinfo=UTC))  # 22:30 in Seoul
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())  # no night consent
    async with dispatcher_for(settings, db, clock, sandbox) as d:
        [mid] = await d.dispatch(
            batch(shop, request("k1", ["sms"], profile_id=pid, template_id=shop.templates["sms_ad"]))
        )
        message = await message_of(db, mid)
        assert (message.status, message.reason) == ("deferred", "night_without_consent")
        assert message.not_before == datetime(2026, 11, 23, 23, 0, tzinfo=UTC)  # 08:00 in Seoul
        assert await sandbox.submissions() == []
        clock.set(datetime(2026, 11, 23, 23, 0, tzinfo=UTC))
        assert await d.send_due() == 1
    assert (await message_of(db, mid)).status == "sent"
    assert len(await sandbox.messages("sms")) == 1


async def test_night_policy_skip(settings, db, clock, sandbox):  # noqa: F811
    clock.set(datetime(2026, 11, 23, 13, 30, tzinfo=UTC))
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    async with dispatcher_for(settings, db, clock, sandbox) as d:
        [mid] = await d.dispatch(
            batch(
                shop,
                request(
                    "k1", ["sms"], profile_id=pid, template_id=shop.templates["sms_ad"], night_policy="skip"
                ),
            )
        )
    message = await message_of(db, mid)
    assert (message.status, message.reason) == ("skipped", "sms: night_without_consent")


async def test_missing_consent_skips_with_reason(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now(), consents=())
    async with dispatcher_for(settings, db, clock, sandbox) as d:
        [mid] = await d.dispatch(
            batch(shop, request("k1", ["sms"], profile_id=pid, template_id=shop.templates["sms_ad"]))
        )
    message = await message_of(db, mid)
    assert (message.status, message.reason) == ("skipped", "sms: no_marketing_consent")
    assert await sandbox.submissions() == []


async def test_suppressed_recipient_is_skipped(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    async with session_scope(db) as session:  # the carrier said the number is dead: nothing goes
        await add_suppressions(
            session, shop.workspace_id, [NewSuppression("sms", "010-1234-5678", "manual")], clock.now()
        )
    async with dispatcher_for(settings, db, clock, sandbox) as d:
        [mid] = await d.dispatch(
            batch(shop, request("k1", ["sms"], profile_id=pid, template_id=shop.templates["sms_info"]))
        )
    message = await message_of(db, mid)
    assert (message.status, message.reason) == ("skipped", "sms: suppressed")
    assert await sandbox.submissions() == []


async def test_a_test_sends_provider_fallback_respects_sms_suppression(settings, db, clock, sandbox):  # noqa: F811
    """A test send to a number suppressed for SMS only: the alimtalk goes, without an SMS fallback."""
    shop = await make_shop(db, clock.now())
    async with session_scope(db) as session:
        await add_suppressions(
            session, shop.workspace_id, [NewSuppression("sms", "010-5555-0001", "manual")], clock.now()
        )
    templates = {"alimtalk": shop.templates["alimtalk"], "sms": shop.templates["sms_info"]}
    async with dispatcher_for(settings, db, clock, sandbox) as d:
        suppressed, free = await d.dispatch(
            batch(
                shop,
                *(
                    request(key, ["alimtalk", "sms"], to=to, templates=templates)
                    for key, to in (("t1", "01055550001"), ("t2", "01055550002"))
                ),
            )
        )
    [no_fallback] = await attempts_of(db, suppressed)
    [with_fallback] = await attempts_of(db, free)
    assert (no_fallback.channel, no_fallback.provider_fallback) == ("alimtalk", False)
    assert (with_fallback.channel, with_fallback.provider_fallback) == ("alimtalk", True)


async def test_a_080_opt_out_stops_ads_but_not_notices(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    async with session_scope(db) as session:
        await add_suppressions(
            session, shop.workspace_id, [NewSuppression("sms", "010-1234-5678", "080")], clock.now()
        )
    async with dispatcher_for(settings, db, clock, sandbox) as d:
        ad, notice = await d.dispatch(
            batch(
                shop,
                request("ad", ["sms"], profile_id=pid, template_id=shop.templates["sms_ad"], is_ad=True),
                request("notice", ["sms"], profile_id=pid, template_id=shop.templates["sms_info"]),
            )
        )
    assert ((await message_of(db, ad)).status, (await message_of(db, ad)).reason) == (
        "skipped",
        "sms: suppressed",
    )
    assert (await message_of(db, notice)).status != "skipped"
    assert len(await sandbox.submissions()) == 1


async def test_unapproved_alimtalk_is_refused(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    async with dispatcher_for(settings, db, clock, sandbox) as d:
        [only, chained] = await d.dispatch(
            batch(
                shop,
                request(
                    "k1", ["alimtalk"], profile_id=pid, template_id=shop.templates["alimtalk_unapproved"]
                ),
                request(
                    "k2",
                    ["alimtalk", "sms"],
                    profile_id=pid,
                    templates={
                        "alimtalk": shop.templates["alimtalk_unapproved"],
                        "sms": shop.templates["sms_info"],
                    },
                ),
            )
        )
    message = await message_of(db, only)
    assert (message.status, message.reason) == ("skipped", "alimtalk: unapproved_template")
    moved = await message_of(db, chained)
    assert (moved.status, moved.channel, moved.reason) == ("sent", "sms", "alimtalk: unapproved_template")
    assert await sandbox.submissions("kakao") == []


# --- invariant 2: one request, one message, one submission ---------------------------------------


async def test_a_repeated_batch_is_ignored(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    same = batch(
        shop, request("order-1001-shipped", ["sms"], profile_id=pid, template_id=shop.templates["sms_info"])
    )
    async with dispatcher_for(settings, db, clock, sandbox) as d:
        first = await d.dispatch(same)
        second = await d.dispatch(same)
    assert first == second
    async with session_scope(db) as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 1
    assert len(await sandbox.messages("sms")) == 1


async def test_every_request_ends_with_one_outcome(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    ok = await make_shopper(db, shop, clock.now())
    no_consent = await make_shopper(db, shop, clock.now(), phone="01022223333", consents=())
    requests = [
        request(f"k{i}", ["sms"], profile_id=pid, template_id=shop.templates["sms_ad"])
        for i, pid in enumerate([ok, no_consent] * 50)
    ]
    async with dispatcher_for(settings, db, clock, sandbox) as d:
        await d.dispatch(batch(shop, *requests))
    async with session_scope(db) as session:
        counts = dict(
            (await session.execute(select(Message.status, func.count()).group_by(Message.status))).all()
        )
    assert counts == {"sent": 50, "skipped": 50}


async def test_rate_limited_provider_is_retried_later(settings, db, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    await sandbox.provider("sms", rate_limited=True, retry_after_s=30)
    async with dispatcher_for(settings, db, clock, sandbox) as d:
        [mid] = await d.dispatch(
            batch(shop, request("k1", ["sms"], profile_id=pid, template_id=shop.templates["sms_info"]))
        )
        message = await message_of(db, mid)
        assert message.status == "queued" and message.tries == 0
        assert message.not_before == clock.now() + timedelta(seconds=30)
        await sandbox.provider("sms", rate_limited=False)
        clock.advance(timedelta(seconds=30))
        assert await d.send_due() == 1
    assert (await message_of(db, mid)).status == "sent"
