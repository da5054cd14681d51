"""The NHN SMS adapter (SMS, LMS, ad forms) against the sandbox over HTTP."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from services.dispatcher.providers.base import Channel, Outcome, ProviderUnavailable
from services.dispatcher.providers.common import WebhookSignatureError
from services.dispatcher.providers.factory import Providers
from services.dispatcher.providers.nhn_sms import parse_events
from shared.testing.sandbox import Sandbox, WebhookReceiver
from tests.dispatcher.providers.conftest import WEBHOOK_SECRET, OutgoingFactory

AD = "(광고)다시 스토어\n주말 쿠폰이 도착했어요\n무료수신거부 080-123-4567"


async def test_different_texts_go_in_one_call_and_are_delivered(
    providers: Providers, outgoing: OutgoingFactory, sandbox: Sandbox
) -> None:
    messages = [
        outgoing(Channel.sms, "01000000001", body="김다시님, 주문하신 상품이 출발했어요"),
        outgoing(Channel.sms, "01000000002", body="이다시님, 주문하신 상품이 출발했어요"),
    ]

    submissions = await providers.sms.submit(messages)

    assert [s.outcome for s in submissions] == [Outcome.accepted] * 2
    assert len(await sandbox.submissions("sms")) == 1
    assert [m["body"] for m in await sandbox.messages(provider="sms")] == [m.body for m in messages]
    report = await providers.sms.poll(submissions[0].provider_ref or "")
    assert report is not None
    assert (report.outcome, report.code, report.cost_krw) == (Outcome.delivered, "1000", 15)


async def test_lms_and_ad_sms_take_their_endpoints(
    providers: Providers, outgoing: OutgoingFactory, sandbox: Sandbox
) -> None:
    lms, ad = await providers.sms.submit(
        [
            outgoing(Channel.lms, body="긴 안내문입니다. " * 20, subject="배송 안내"),
            outgoing(Channel.sms, body=AD, is_ad=True),
        ]
    )

    assert (lms.outcome, ad.outcome) == (Outcome.accepted, Outcome.accepted)
    assert sorted(c["endpoint"] for c in await sandbox.submissions("sms")) == ["ad-sms", "mms"]
    lms_report = await providers.sms.poll(lms.provider_ref or "")
    assert lms_report is not None and lms_report.cost_krw == 40


async def test_refusals_are_classified(
    providers: Providers, outgoing: OutgoingFactory, sandbox: Sandbox
) -> None:
    over, not_ad_form, emoji = await providers.sms.submit(
        [
            outgoing(Channel.sms, "01000000001", body="가" * 46),  # 92 bytes in EUC-KR
            outgoing(Channel.sms, "01000000002", body="[광고] 주말 쿠폰", is_ad=True),
            outgoing(Channel.sms, "01000000003", body="쿠폰 🎁"),
        ]
    )
    assert (over.outcome, over.code) == (Outcome.rejected, "-2014")
    assert (not_ad_form.outcome, not_ad_form.code) == (Outcome.rejected, "-2021")
    assert (emoji.outcome, emoji.code) == (Outcome.rejected, "-2016")

    [unregistered] = await providers.sms.submit([outgoing(Channel.sms, sender="0299998888")])
    assert (unregistered.outcome, unregistered.code) == (Outcome.misconfigured, "-2018")

    await sandbox.provider("sms", rate_limited=True, retry_after_s=2)
    [throttled] = await providers.sms.submit([outgoing(Channel.sms)])
    assert (throttled.outcome, throttled.retry_after) == (Outcome.rate_limited, 2.0)

    await sandbox.provider("sms", rate_limited=False, outage=True)
    with pytest.raises(ProviderUnavailable):
        await providers.sms.submit([outgoing(Channel.sms)])


async def test_power_off_is_pending_until_delivered(
    providers: Providers, outgoing: OutgoingFactory, sandbox: Sandbox
) -> None:
    await sandbox.script("01000000001", "power_off_then_delivered")
    await sandbox.script("01000000002", "bad_number")
    power_off, bad = await providers.sms.submit(
        [outgoing(Channel.sms, "01000000001"), outgoing(Channel.sms, "01000000002")]
    )

    # the carrier's interim 2003 is not a result: polling says "pending" until the phone is back on
    assert await providers.sms.poll(power_off.provider_ref or "") is None
    [message] = await sandbox.messages(recipient="01000000001")
    assert (message["status"], message["result_code"]) == ("SENDING", "2003")
    for _ in range(100):
        later = await providers.sms.poll(power_off.provider_ref or "")
        if later and later.outcome is Outcome.delivered:
            break
        await asyncio.sleep(0.01)
    assert later is not None and (later.outcome, later.code) == (Outcome.delivered, "1000")
    bad_report = await providers.sms.poll(bad.provider_ref or "")
    assert bad_report is not None and (bad_report.outcome, bad_report.code) == (Outcome.unreachable, "3003")


async def test_080_opt_out_event_and_the_opted_out_code(
    providers: Providers, outgoing: OutgoingFactory, sandbox: Sandbox, webhook_receiver: WebhookReceiver
) -> None:
    await sandbox.webhook("sms", webhook_receiver.url, WEBHOOK_SECRET)
    await sandbox.opt_out_080("01055556666")
    [call] = await webhook_receiver.wait_for(1)

    batch = parse_events(call.headers, call.body, WEBHOOK_SECRET)
    assert batch.reports == []
    assert [(o.recipient, o.via) for o in batch.opt_outs] == [("01055556666", "080:0801234567")]

    [ad] = await providers.sms.submit([outgoing(Channel.sms, "01055556666", body=AD, is_ad=True)])
    [result_call] = (await webhook_receiver.wait_for(2))[1:]
    [report] = providers.sms.parse_webhook(result_call.headers, result_call.body)
    assert (report.outcome, report.code, report.provider_ref) == (Outcome.opted_out, "-6001", ad.provider_ref)
    assert orjson.loads(result_call.body)["event"] == "MESSAGE_RESULT_UPDATE"

    with pytest.raises(WebhookSignatureError):
        parse_events(call.headers, call.body + b" ", WEBHOOK_SECRET)


async def test_lookup_after_a_crash_and_deduplicated_resubmit(
    providers: Providers, outgoing: OutgoingFactory, sandbox: Sandbox
) -> None:
    messages = [outgoing(Channel.sms, f"0100000000{i}") for i in range(2)]
    first = await providers.sms.submit(messages)

    found = await providers.sms.lookup(messages[1])
    assert found is not None and found.provider_ref == first[1].provider_ref
    assert await providers.sms.lookup(outgoing(Channel.sms)) is None

    again = await providers.sms.submit(messages)
    assert [s.provider_ref for s in again] == [s.provider_ref for s in first]
    assert [c["answer"] for c in await sandbox.submissions("sms")] == ["accepted", "-1005"]


async def test_webhook_passes_on_only_final_results(
    providers: Providers, outgoing: OutgoingFactory, sandbox: Sandbox, webhook_receiver: WebhookReceiver
) -> None:
    await sandbox.webhook("sms", webhook_receiver.url, WEBHOOK_SECRET)
    await sandbox.script("01000000001", "power_off_then_delivered")
    [sent] = await providers.sms.submit([outgoing(Channel.sms, "01000000001")])

    calls = await webhook_receiver.wait_for(2)  # the interim 2003, then the delivery
    hooks = [h["resultCode"] for c in calls for h in orjson.loads(c.body)["hooks"]]
    reports = [r for c in calls for r in providers.sms.parse_webhook(c.headers, c.body)]
    assert hooks == ["2003", "1000"]
    assert [(r.provider_ref, r.outcome, r.code) for r in reports] == [
        (sent.provider_ref, Outcome.delivered, "1000")
    ]
