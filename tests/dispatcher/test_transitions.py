"""The rules of what an answer or a report means for a message (transitions.decide), one by one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.dispatcher.providers.base import Outcome, ResendStatus
from services.dispatcher.transitions import MessageState, decide

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 21:00 in Seoul
KAKAO_SMS = MessageState(("friendtalk", "sms"), 0, 0, "sent")


def _decide(state: MessageState = KAKAO_SMS, **kw):
    kw.setdefault("channel", state.chain[state.chain_pos])
    kw.setdefault("code", "x")
    return decide(state, now=NOW, tz="Asia/Seoul", **kw)


@pytest.mark.parametrize("resend", [ResendStatus.target, ResendStatus.resending])
def test_provider_fallback_under_way_waits(resend):
    d = _decide(outcome=Outcome.unreachable, provider_fallback=True, resend_status=resend)
    assert d.attempt_state == "pending" and d.status is None


def test_provider_fallback_succeeded_is_delivered_via_fallback():
    d = _decide(outcome=Outcome.delivered, provider_fallback=True, resend_status=ResendStatus.succeeded)
    assert (d.status, d.channel) == ("delivered_via_fallback", "sms")


@pytest.mark.parametrize("resend", [ResendStatus.failed, ResendStatus.not_target, None])
def test_provider_fallback_failed_or_not_run_moves_on_ourselves(resend):
    d = _decide(outcome=Outcome.unreachable, provider_fallback=True, resend_status=resend)
    assert (d.status, d.chain_pos, d.now) == ("queued", 1, True)


def test_end_of_chain_fails_with_reason():
    d = _decide(MessageState(("sms",), 0, 0, "sending"), outcome=Outcome.failed, code="3001")
    assert (d.status, d.reason) == ("failed", "sms: failed (3001)")


def test_outside_kakao_hours_defers_to_the_morning_not_to_sms():
    d = _decide(outcome=Outcome.outside_hours, code="3022")
    assert (d.status, d.not_before) == ("deferred", datetime(2026, 11, 23, 23, 0, tzinfo=UTC))


def test_rejected_content_fails_without_fallback():
    d = _decide(outcome=Outcome.rejected, code="3014")
    assert d.status == "failed" and d.chain_pos is None


def test_misconfigured_trips_the_breaker_and_moves_on():
    d = _decide(outcome=Outcome.misconfigured, code="1021")
    assert d.trip_breaker and (d.status, d.chain_pos) == ("queued", 1)


def test_transient_backs_off_then_moves_on():
    first = _decide(outcome=Outcome.transient)
    assert first.status == "queued" and first.tries == 1 and first.not_before > NOW
    last = _decide(MessageState(("friendtalk", "sms"), 0, 2, "sending"), outcome=Outcome.transient)
    assert (last.status, last.chain_pos, last.tries) == ("queued", 1, 0)


def test_rate_limited_waits_retry_after_without_counting_a_try():
    d = _decide(outcome=Outcome.rate_limited, retry_after=7)
    assert d.not_before == NOW + timedelta(seconds=7) and d.tries is None


def test_a_late_report_never_rewrites_an_outcome():
    d = _decide(MessageState(("sms",), 0, 0, "delivered"), outcome=Outcome.failed)
    assert d.status is None and d.attempt_state == "done"


def test_opt_out_skips_and_asks_for_suppression():
    d = _decide(outcome=Outcome.opted_out, code="-6001")
    assert (d.status, d.reason, d.opted_out) == ("skipped", "opted_out", True)


def test_delivered_on_a_later_channel_is_delivered_via_fallback():
    d = _decide(MessageState(("push", "sms"), 1, 0, "sent"), outcome=Outcome.delivered)
    assert (d.status, d.channel) == ("delivered_via_fallback", "sms")
