"""The NHN Kakao adapter (alimtalk, friendtalk, brand message) against the sandbox over HTTP."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from services.dispatcher.provider_settings import ProviderSettings
from services.dispatcher.providers.base import Channel, Outcome, ProviderUnavailable, ResendStatus
from services.dispatcher.providers.common import WebhookSignatureError
from services.dispatcher.providers.factory import Providers, build_http_client, build_providers
from services.dispatcher.providers.nhn_kakao import parse_webhook
from shared.testing.sandbox import Sandbox, WebhookReceiver
from tests.dispatcher.providers.conftest import WEBHOOK_SECRET, OutgoingFactory, sms_fallback


async def test_alimtalk_accepted_then_delivered_by_poll(
    providers: Providers, outgoing: OutgoingFactory
) -> None:
    messages = [
        outgoing(
            Channel.alimtalk, "01012345678", template_parameters={"이름": "김다시", "주문번호": "A-1001"}
        ),
        outgoing(
            Channel.alimtalk, "01087654321", template_parameters={"이름": "이다시", "주문번호": "A-1002"}
        ),
    ]

    submissions = await providers.kakao.submit(messages)

    assert [s.message_id for s in submissions] == [m.message_id for m in messages]
    assert [(s.outcome, s.code) for s in submissions] == [(Outcome.accepted, "0")] * 2
    assert submissions[0].provider_ref and submissions[0].provider_ref.startswith("alimtalk:")
    report = await providers.kakao.poll(submissions[1].provider_ref or "")
    assert report is not None
    assert (report.outcome, report.code, report.cost_krw) == (Outcome.delivered, "1000", 9)
    assert report.idempotency_key == messages[1].idempotency_key


async def test_a_batch_of_2500_goes_in_calls_of_1000(
    providers: Providers, outgoing: OutgoingFactory, sandbox: Sandbox
) -> None:
    messages = [outgoing(Channel.alimtalk, f"010{i:08d}") for i in range(2500)]

    submissions = await providers.kakao.submit(messages)

    assert all(s.outcome is Outcome.accepted for s in submissions)
    assert [s.message_id for s in submissions] == [m.message_id for m in messages]
    calls = await sandbox.submissions("kakao")
    assert sorted(c["recipients"] for c in calls) == [500, 1000, 1000]
    assert len({s.provider_ref for s in submissions}) == 2500


async def test_friendtalk_to_a_non_friend_and_a_non_kakao_user_are_unreachable(
    providers: Providers, outgoing: OutgoingFactory, sandbox: Sandbox
) -> None:
    await sandbox.script("01000000001", "not_friend")
    await sandbox.script("01000000002", "not_kakao_user")
    await sandbox.script("01000000003", "bad_number")
    messages = [outgoing(Channel.friendtalk, f"0100000000{i}") for i in (1, 2, 3)]

    submissions = await providers.kakao.submit(messages)

    assert all(s.outcome is Outcome.accepted for s in submissions)  # every send is asynchronous
    reports = [await providers.kakao.poll(s.provider_ref or "") for s in submissions]
    assert [(r.outcome, r.code) for r in reports if r] == [
        (Outcome.unreachable, "2003"),
        (Outcome.unreachable, "3019"),
        (Outcome.unreachable, "3008"),
    ]


async def test_friendtalk_at_night_is_outside_hours(
    providers: Providers, outgoing: OutgoingFactory, sandbox: Sandbox
) -> None:
    await sandbox.set_clock(datetime(2026, 11, 23, 12, 30, tzinfo=UTC))  # 21:30 in Seoul
    [submission] = await providers.kakao.submit([outgoing(Channel.friendtalk, is_ad=True)])

    report = await providers.kakao.poll(submission.provider_ref or "")
    assert report is not None
    assert (report.outcome, report.code) == (Outcome.outside_hours, "3022")


async def test_brand_message_reaches_a_non_friend_at_the_non_friend_price(
    providers: Providers, outgoing: OutgoingFactory, sandbox: Sandbox
) -> None:
    await sandbox.script("01000000001", "not_friend")
    [submission] = await providers.kakao.submit([outgoing(Channel.brand_message, "01000000001", is_ad=True)])

    report = await providers.kakao.poll(submission.provider_ref or "")
    assert report is not None
    assert (report.outcome, report.cost_krw) == (Outcome.delivered, 35)


async def test_provider_fallback_is_reported_as_rsc04_and_rsc05(
    providers: Providers, outgoing: OutgoingFactory, sandbox: Sandbox
) -> None:
    await sandbox.script("01000000001", "not_friend")
    await sandbox.script("01000000002", "bad_number")
    await sandbox.script("01000000003", "not_friend")
    await sandbox.opt_out_080("01000000003")  # and on the 080 list
    ad_text = "(광고)다시 스토어 주말 쿠폰\n무료수신거부 080-123-4567"
    messages = [
        outgoing(Channel.friendtalk, "01000000001", provider_fallback=sms_fallback()),
        outgoing(Channel.friendtalk, "01000000002", provider_fallback=sms_fallback()),
        outgoing(
            Channel.friendtalk,
            "01000000003",
            is_ad=True,
            body="(광고) 다시 스토어 주말 쿠폰",
            provider_fallback=sms_fallback(ad_text, unsubscribe_no="0801234567"),
        ),
    ]

    submissions = await providers.kakao.submit(messages)
    reports = [await providers.kakao.poll(s.provider_ref or "") for s in submissions]

    assert [(r.outcome, r.code, r.resend_status) for r in reports if r] == [
        (Outcome.delivered, "2003", ResendStatus.succeeded),  # the provider's SMS arrived: no second SMS
        (Outcome.unreachable, "3008", ResendStatus.failed),  # its SMS failed too: the pipeline decides
        (Outcome.opted_out, "2003", ResendStatus.failed),  # the fallback met the 080 list
    ]
    assert reports[0] is not None and reports[0].cost_krw == 15  # billed at the SMS price


async def test_refusals_of_the_whole_call_are_classified(
    providers: Providers, outgoing: OutgoingFactory, sandbox: Sandbox
) -> None:
    [unknown_sender] = await providers.kakao.submit([outgoing(Channel.friendtalk, sender="모르는-발신키")])
    assert (unknown_sender.outcome, unknown_sender.code) == (Outcome.misconfigured, "1003")

    await sandbox.register(templates=["ORDER_SHIPPED"])
    [bad_template] = await providers.kakao.submit([outgoing(Channel.alimtalk, template_code="NOT_APPROVED")])
    assert (bad_template.outcome, bad_template.code) == (Outcome.rejected, "3016")

    [too_long] = await providers.kakao.submit([outgoing(Channel.friendtalk, body="가" * 1001)])
    assert too_long.outcome is Outcome.rejected

    await sandbox.provider("kakao", rate_limited=True, retry_after_s=4)
    [throttled] = await providers.kakao.submit([outgoing(Channel.alimtalk)])
    assert (throttled.outcome, throttled.code, throttled.retry_after) == (Outcome.rate_limited, "4156", 4.0)


async def test_wrong_secret_key_is_misconfigured(sandbox: Sandbox, outgoing: OutgoingFactory) -> None:
    settings = ProviderSettings(**sandbox.provider_kwargs(nhn_kakao_secret_key="not-the-secret"))
    async with build_http_client(settings) as client:
        [submission] = await build_providers(settings, client).kakao.submit([outgoing(Channel.alimtalk)])
    assert (submission.outcome, submission.code) == (Outcome.misconfigured, "-1004")


async def test_outage_and_unreachable_host_raise_provider_unavailable(
    providers: Providers, outgoing: OutgoingFactory, sandbox: Sandbox
) -> None:
    await sandbox.provider("kakao", outage=True)
    with pytest.raises(ProviderUnavailable) as outage:
        await providers.kakao.submit([outgoing(Channel.alimtalk)])
    assert "503" in outage.value.detail

    settings = ProviderSettings(**sandbox.provider_kwargs(nhn_kakao_base_url="http://127.0.0.1:9"))
    async with build_http_client(settings) as client:
        with pytest.raises(ProviderUnavailable):
            await build_providers(settings, client).kakao.submit([outgoing(Channel.alimtalk)])


async def test_after_a_crash_lookup_finds_the_submission_and_a_resubmit_is_deduplicated(
    providers: Providers, outgoing: OutgoingFactory, sandbox: Sandbox
) -> None:
    messages = [outgoing(Channel.alimtalk, f"0100000000{i}") for i in range(3)]
    never_sent = outgoing(Channel.alimtalk)
    first = await providers.kakao.submit(messages)
    # ... the worker dies here, before recording `first`. On retry it looks each key up first:

    found = [await providers.kakao.lookup(m) for m in messages]
    assert [f.provider_ref for f in found if f] == [s.provider_ref for s in first]
    assert await providers.kakao.lookup(never_sent) is None

    # a retry that submits anyway is refused by NHN (same X-NC-API-IDEMPOTENCY-KEY) and answered from lookup
    again = await providers.kakao.submit(messages)
    assert [s.provider_ref for s in again] == [s.provider_ref for s in first]
    assert [c["answer"] for c in await sandbox.submissions("kakao")] == ["accepted", "-1005"]
    for message in messages:
        assert len(await sandbox.messages(grouping_key=message.idempotency_key)) == 1


async def test_webhook_reports_are_verified_and_mapped(
    providers: Providers, outgoing: OutgoingFactory, sandbox: Sandbox, webhook_receiver: WebhookReceiver
) -> None:
    await sandbox.webhook("kakao", webhook_receiver.url, WEBHOOK_SECRET)
    await sandbox.script("01000000002", "not_kakao_user")
    messages = [outgoing(Channel.alimtalk, "01000000001"), outgoing(Channel.alimtalk, "01000000002")]
    submissions = await providers.kakao.submit(messages)

    [call] = await webhook_receiver.wait_for(1)
    reports = providers.kakao.parse_webhook(call.headers, call.body)

    by_key = {r.idempotency_key: r for r in reports}
    assert (by_key[messages[0].idempotency_key].outcome, by_key[messages[0].idempotency_key].code) == (
        Outcome.delivered,
        "1000",
    )
    assert by_key[messages[1].idempotency_key].outcome is Outcome.unreachable
    assert {r.provider_ref for r in reports} == {s.provider_ref for s in submissions}

    with pytest.raises(WebhookSignatureError):
        parse_webhook(call.headers, call.body.replace(b"1000", b"3019"), WEBHOOK_SECRET)
    with pytest.raises(WebhookSignatureError):
        parse_webhook(call.headers, call.body, "another-secret")
    with pytest.raises(WebhookSignatureError):
        parse_webhook({}, call.body, WEBHOOK_SECRET)


async def test_slow_provider_answers_late_and_a_timeout_is_unavailable(
    sandbox: Sandbox, outgoing: OutgoingFactory
) -> None:
    await sandbox.provider("kakao", latency_ms=150)
    patient = ProviderSettings(**sandbox.provider_kwargs())
    hasty = ProviderSettings(**sandbox.provider_kwargs(timeout_s=0.05))
    async with build_http_client(patient) as client:
        started = time.perf_counter()
        [late] = await build_providers(patient, client).kakao.submit([outgoing(Channel.alimtalk)])
        assert late.outcome is Outcome.accepted
        assert time.perf_counter() - started >= 0.15
    async with build_http_client(hasty) as client:
        with pytest.raises(ProviderUnavailable):
            await build_providers(hasty, client).kakao.submit([outgoing(Channel.alimtalk)])
