"""The FCM and email adapters against the sandbox over HTTP, and the provider settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.dispatcher.provider_settings import ProviderSettings
from services.dispatcher.providers.base import Channel, Outcome, ProviderUnavailable
from services.dispatcher.providers.common import WebhookSignatureError
from services.dispatcher.providers.factory import Providers
from shared.testing.sandbox import Sandbox, WebhookReceiver
from tests.dispatcher.providers.conftest import OutgoingFactory


async def test_push_is_delivered_or_classified(
    providers: Providers, outgoing: OutgoingFactory, sandbox: Sandbox
) -> None:
    await sandbox.script("expired-token", "invalid_push_token")
    ok, gone, too_big = await providers.push.submit(
        [
            outgoing(Channel.push, "fresh-token", data={"url": "https://store.example/cart"}),
            outgoing(Channel.push, "expired-token"),
            outgoing(Channel.push, "fresh-token", data={"blob": "가" * 2000}),
        ]
    )

    assert (ok.outcome, ok.code) == (Outcome.delivered, "200")  # FCM has no later report
    assert ok.provider_ref and ok.provider_ref.startswith(f"projects/{sandbox.appkey}/messages/")
    assert (gone.outcome, gone.code) == (Outcome.unreachable, "UNREGISTERED")
    assert (too_big.outcome, too_big.code) == (Outcome.rejected, "INVALID_ARGUMENT")

    await sandbox.provider("fcm", rate_limited=True, retry_after_s=7)
    [throttled] = await providers.push.submit([outgoing(Channel.push, "fresh-token")])
    assert (throttled.outcome, throttled.code, throttled.retry_after) == (
        Outcome.rate_limited,
        "QUOTA_EXCEEDED",
        7.0,
    )

    await sandbox.provider("fcm", rate_limited=False, outage=True)
    with pytest.raises(ProviderUnavailable):
        await providers.push.submit([outgoing(Channel.push, "a"), outgoing(Channel.push, "b")])


async def test_push_lookup_after_a_crash(providers: Providers, outgoing: OutgoingFactory) -> None:
    message = outgoing(Channel.push, "fresh-token")
    [sent] = await providers.push.submit([message])

    found = await providers.push.lookup(message)
    assert found is not None and found.provider_ref == sent.provider_ref
    assert await providers.push.lookup(outgoing(Channel.push, "fresh-token")) is None


async def test_email_accepted_then_reported_by_webhook_with_unsubscribe_headers(
    providers: Providers, outgoing: OutgoingFactory, sandbox: Sandbox, webhook_receiver: WebhookReceiver
) -> None:
    await sandbox.webhook("email", webhook_receiver.url, providers.settings.email_webhook_secret)
    await sandbox.script("bounce@example.kr", "bounce")
    to_kim = outgoing(
        Channel.email, "kim@example.kr", unsubscribe_url="https://dasi.example/u/abc", is_ad=True
    )
    kim_key = to_kim.idempotency_key
    ok, bounced = await providers.email.submit([to_kim, outgoing(Channel.email, "bounce@example.kr")])
    assert (ok.outcome, ok.code) == (Outcome.accepted, "202")

    calls = await webhook_receiver.wait_for(1)
    reports = [r for c in calls for r in providers.email.parse_webhook(c.headers, c.body)]
    while len(reports) < 2:
        calls = await webhook_receiver.wait_for(len(calls) + 1)
        reports = [r for c in calls for r in providers.email.parse_webhook(c.headers, c.body)]
    by_ref = {r.provider_ref: r for r in reports}
    assert by_ref[ok.provider_ref or ""].outcome is Outcome.delivered
    assert by_ref[bounced.provider_ref or ""].outcome is Outcome.unreachable
    [kim] = await sandbox.messages(provider="email", recipient="kim@example.kr")
    assert kim["headers"] == {
        "List-Unsubscribe": "<https://dasi.example/u/abc>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }

    await sandbox.email_unsubscribe("kim@example.kr")
    calls = await webhook_receiver.wait_for(len(calls) + 1)
    batch = providers.parse_webhook("email", calls[-1].headers, calls[-1].body)
    assert [(r.outcome, r.idempotency_key) for r in batch.reports] == [(Outcome.opted_out, kim_key)]
    assert [o.recipient for o in batch.opt_outs] == ["kim@example.kr"]

    with pytest.raises(WebhookSignatureError):
        providers.parse_webhook("email", {"X-Twilio-Email-Event-Webhook-Signature": "00"}, calls[-1].body)


async def test_email_poll_lookup_and_refusals(
    providers: Providers, outgoing: OutgoingFactory, sandbox: Sandbox
) -> None:
    message = outgoing(Channel.email, "lee@example.kr")
    [sent] = await providers.email.submit([message])

    report = await providers.email.poll(sent.provider_ref or "")
    assert report is not None
    assert (report.outcome, report.idempotency_key, report.cost_krw) == (
        Outcome.delivered,
        message.idempotency_key,
        1,
    )
    found = await providers.email.lookup(message)
    assert found is not None and found.provider_ref == sent.provider_ref
    assert await providers.email.lookup(outgoing(Channel.email)) is None

    await sandbox.provider("email", rate_limited=True, retry_after_s=5)
    [throttled] = await providers.email.submit([outgoing(Channel.email)])
    assert (throttled.outcome, throttled.code, throttled.retry_after) == (Outcome.rate_limited, "429", 5.0)
    await sandbox.provider("email", rate_limited=False, outage=True)
    with pytest.raises(ProviderUnavailable):
        await providers.email.submit([outgoing(Channel.email)])


def test_production_refuses_the_sandbox_defaults() -> None:
    with pytest.raises(ValidationError, match="dev defaults"):
        ProviderSettings(env="production")
    assert ProviderSettings().nhn_kakao_base_url == "http://127.0.0.1:8010"
