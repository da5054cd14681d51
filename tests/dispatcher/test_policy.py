"""The send policy: consent per channel, the night window, Kakao's hours, suppressions, alimtalk
approval, sender registration, in the workspace's timezone. And the recipient loader behind it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from services.dispatcher.models import SenderProfile
from services.dispatcher.policy import (
    Action,
    ConsentFact,
    Decision,
    Message,
    NightPolicy,
    Reason,
    Recipient,
    Rules,
    SenderRules,
    decide,
)
from services.dispatcher.providers.base import Channel
from services.dispatcher.recipients import load_recipients
from services.dispatcher.senders import adform_sender, sender_rules
from services.dispatcher.suppressions import NewSuppression, add_suppressions
from shared.db import session_scope

SEOUL = ZoneInfo("Asia/Seoul")
LA = ZoneInfo("America/Los_Angeles")
GIVEN = datetime(2026, 6, 1, tzinfo=UTC)
PHONE = "01012345678"
SENDER = SenderRules(
    registered_numbers=frozenset({"0212345678"}),
    opt_out_number="0801234567",
    kakao_sender_key="kakao-key",
    email_from_verified=True,
)
SMS_AD = Message(Channel.sms, is_ad=True, sender_number="0212345678")
SMS_INFO = Message(Channel.sms, is_ad=False, sender_number="0212345678")
FRIENDTALK_AD = Message(Channel.friendtalk, is_ad=True)


def consents(*topics: str, given: datetime = GIVEN, granted: bool = True) -> dict[str, ConsentFact]:
    return {t: ConsentFact(granted, given) for t in topics}


def person(*topics: str, **fields) -> Recipient:
    defaults = {
        "profile_id": uuid.UUID(int=1),
        "phone": PHONE,
        "email": "kim@example.com",
        "push_tokens": ("tok-1",),
        "kakao_channel_friend": True,
        "consents": consents(*topics),
    }
    return Recipient(**{**defaults, **fields})


def seoul(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=SEOUL)


def run(recipient: Recipient, message: Message, at: datetime, **kwargs) -> Decision:
    return decide(
        recipient, message, at, sender=kwargs.pop("sender", SENDER), rules=kwargs.pop("rules", None)
    )


# --- night window (C2) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (seoul(23, 20, 59), Decision(Action.send)),
        (
            seoul(23, 21, 0),
            Decision(Action.defer, Reason.night_without_consent, seoul(24, 8).astimezone(UTC)),
        ),
        (
            seoul(24, 7, 59),
            Decision(Action.defer, Reason.night_without_consent, seoul(24, 8).astimezone(UTC)),
        ),
        (seoul(24, 8, 0), Decision(Action.send)),
    ],
)
def test_night_window_in_seoul(at, expected):
    assert run(person("sms"), SMS_AD, at) == expected


def test_night_consent_lets_an_ad_go_at_night():
    assert run(person("sms", "night"), SMS_AD, seoul(23, 23, 30)).sends


def test_informational_messages_ignore_the_night_window_and_marketing_consent():
    assert run(person(), SMS_INFO, seoul(23, 23, 30)).sends


def test_campaign_may_skip_instead_of_deferring():
    decision = run(person("sms"), SMS_AD, seoul(23, 22), rules=Rules(night_policy=NightPolicy.skip))
    assert decision == Decision(Action.skip, Reason.night_without_consent)


@pytest.mark.parametrize(
    ("hour", "minute", "sends"), [(20, 59, True), (21, 0, False), (7, 59, False), (8, 0, True)]
)
def test_night_window_in_the_workspace_timezone(hour, minute, sends):
    at = datetime(2026, 11, 24, hour, minute, tzinfo=LA)
    decision = run(person("sms"), SMS_AD, at, rules=Rules(timezone="America/Los_Angeles"))
    assert decision.sends is sends
    if not sends:
        morning = at.date() + timedelta(days=1) if hour >= 21 else at.date()
        assert decision.until == datetime.combine(morning, time(8), tzinfo=LA).astimezone(UTC)
    # the same instants in Seoul's rules give other answers: 21:00 in LA is 14:00 in Seoul
    if (hour, minute) == (21, 0):
        assert run(person("sms"), SMS_AD, at).sends


# --- Kakao's hours (C3) --------------------------------------------------------------------------


@pytest.mark.parametrize(("hour", "minute", "sends"), [(20, 49, True), (20, 50, False), (8, 0, True)])
def test_kakao_marketing_cut_off_at_20_50(hour, minute, sends):
    decision = run(person("kakao", "night"), FRIENDTALK_AD, seoul(23, hour, minute))
    assert decision.sends is sends
    if not sends:
        assert decision == Decision(Action.defer, Reason.kakao_hours, seoul(24, 8).astimezone(UTC))


@pytest.mark.parametrize(("hour", "minute", "sends"), [(19, 59, True), (20, 0, False)])
def test_a_store_may_stop_kakao_earlier(hour, minute, sends):
    sender = SenderRules(kakao_sender_key="kakao-key", kakao_ad_cutoff=time(20, 0))
    assert run(person("kakao"), FRIENDTALK_AD, seoul(23, hour, minute), sender=sender).sends is sends


def test_kakao_before_8_with_night_consent_waits_for_kakao():
    decision = run(person("kakao", "night"), FRIENDTALK_AD, seoul(24, 7, 30))
    assert decision == Decision(Action.defer, Reason.kakao_hours, seoul(24, 8).astimezone(UTC))


def test_alimtalk_is_not_bound_to_kakao_marketing_hours():
    alimtalk = Message(Channel.alimtalk, is_ad=False, template_review_state="approved")
    assert run(person(), alimtalk, seoul(23, 23)).sends


# --- consent (C1, C8, C10) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "topic"),
    [(Channel.sms, "sms"), (Channel.lms, "sms"), (Channel.push, "push"), (Channel.email, "email")],
)
def test_ads_need_consent_for_their_channel(channel, topic):
    message = Message(channel, is_ad=True, sender_number="0212345678")
    at = seoul(23, 10)
    assert run(person(), message, at) == Decision(Action.skip, Reason.no_marketing_consent)
    other = "email" if topic != "email" else "sms"
    assert run(person(other), message, at) == Decision(Action.skip, Reason.no_marketing_consent)
    assert (
        run(person(consents=consents(topic, granted=False)), message, at).reason
        is Reason.no_marketing_consent
    )
    assert run(person(topic), message, at).sends


def test_consent_older_than_two_years_stops_ads():
    old = consents("sms", given=datetime(2024, 11, 22, tzinfo=UTC))
    assert run(person(consents=old), SMS_AD, seoul(23, 10)) == Decision(Action.skip, Reason.consent_expired)
    fresh = consents("sms", given=datetime(2024, 11, 24, tzinfo=UTC))
    assert run(person(consents=fresh), SMS_AD, seoul(23, 10)).sends


def test_friendtalk_needs_a_channel_friend_and_no_explicit_no():
    at = seoul(23, 10)
    assert run(person(kakao_channel_friend=False), FRIENDTALK_AD, at).reason is Reason.not_channel_friend
    assert run(person(), FRIENDTALK_AD, at).sends  # friendship is the opt-in
    said_no = person(consents=consents("kakao", granted=False))
    assert run(said_no, FRIENDTALK_AD, at).reason is Reason.no_marketing_consent


def test_brand_message_to_a_non_friend_needs_kakao_consent():
    brand = Message(Channel.brand_message, is_ad=True)
    at = seoul(23, 10)
    assert run(person(kakao_channel_friend=False), brand, at).reason is Reason.no_marketing_consent
    assert run(person("kakao", kakao_channel_friend=False), brand, at).sends


# --- suppressions, templates, senders, addresses -------------------------------------------------


def test_suppressed_addresses_are_not_sent_to():
    at = seoul(23, 10)
    sms_out = person("sms", "kakao", suppressed=frozenset({("sms", PHONE)}))
    assert run(sms_out, SMS_AD, at) == Decision(Action.skip, Reason.suppressed)
    assert run(sms_out, SMS_INFO, at).reason is Reason.suppressed
    assert run(sms_out, FRIENDTALK_AD, at).sends  # an SMS opt-out is not a Kakao one
    everything = person("sms", "kakao", suppressed=frozenset({("all", PHONE)}))
    assert run(everything, FRIENDTALK_AD, at).reason is Reason.suppressed
    whole = person("email", suppressed=frozenset({("email", f"profile:{uuid.UUID(int=1)}")}))
    assert run(whole, Message(Channel.email, is_ad=True), at).reason is Reason.suppressed


def test_an_opt_out_from_ads_still_lets_order_notices_through():
    at = seoul(23, 10)
    opted_out = person("sms", "kakao", ads_suppressed=frozenset({("sms", PHONE)}))  # 080 수신거부
    assert run(opted_out, SMS_AD, at).reason is Reason.suppressed
    assert run(opted_out, SMS_INFO, at).sends  # 주문/배송 안내는 계속


@pytest.mark.parametrize("state", ["registered", "under_review", "rejected", None])
def test_unapproved_alimtalk_is_refused(state):
    message = Message(Channel.alimtalk, is_ad=False, template_review_state=state)
    assert run(person(), message, seoul(23, 10)) == Decision(Action.skip, Reason.unapproved_template)


def test_alimtalk_never_carries_ads():
    message = Message(Channel.alimtalk, is_ad=True, template_review_state="approved")
    assert run(person("kakao"), message, seoul(23, 10)).reason is Reason.alimtalk_ad_content


def test_only_registered_senders():
    at = seoul(23, 10)
    unregistered = Message(Channel.sms, is_ad=False, sender_number="0299998888")
    assert run(person(), unregistered, at).reason is Reason.unregistered_sender
    assert run(person(), Message(Channel.sms, is_ad=False), at).reason is Reason.unregistered_sender
    no_key = SenderRules(registered_numbers=SENDER.registered_numbers)
    assert run(person(), FRIENDTALK_AD, at, sender=no_key).reason is Reason.unregistered_sender
    no_080 = SenderRules(registered_numbers=SENDER.registered_numbers)
    assert run(person("sms"), SMS_AD, at, sender=no_080).reason is Reason.no_opt_out_number
    unverified_email = SenderRules()
    assert run(person(), Message(Channel.email, is_ad=False), at, sender=unverified_email).reason is (
        Reason.unregistered_sender
    )


def test_sender_profile_rules_count_only_verified_registrations():
    profile = SenderProfile(
        store_name="다시 스토어",
        sender_numbers=[
            {"number": "0212345678", "verified": True},
            {"number": "0311112222", "verified": False},
        ],
        opt_out_number="0801234567",
        opt_out_verified=False,
        kakao_sender_key="kakao-key",
        kakao_ad_cutoff=time(20, 0),
        email_from="shop@dasi.shop",
        email_verified=True,
    )
    rules = sender_rules(profile)
    assert rules.registered_numbers == frozenset({"0212345678"})
    assert rules.opt_out_number is None and adform_sender(profile).opt_out_number is None
    assert rules.kakao_ad_cutoff == time(20, 0) and rules.email_from_verified
    at = seoul(23, 10)
    assert run(person("sms"), SMS_AD, at, sender=rules).reason is Reason.no_opt_out_number
    unverified = Message(Channel.sms, is_ad=False, sender_number="0311112222")
    assert run(person(), unverified, at, sender=rules).reason is Reason.unregistered_sender
    assert run(person("kakao"), FRIENDTALK_AD, seoul(23, 20, 0), sender=rules).reason is Reason.kakao_hours


def test_no_address():
    at = seoul(23, 10)
    assert run(person(phone=None), SMS_INFO, at).reason is Reason.no_address
    assert run(person(push_tokens=()), Message(Channel.push, is_ad=False), at).reason is Reason.no_address
    assert run(person(email=None), Message(Channel.email, is_ad=False), at).reason is Reason.no_address


# --- the recipient loader ------------------------------------------------------------------------


async def _profile(session, workspace_id, traits, consents_=()):
    profile_id = uuid.uuid4()
    await session.execute(
        text(
            "INSERT INTO ingest.profiles (id, workspace_id, user_id, traits) "
            "VALUES (:id, :ws, :uid, CAST(:traits AS jsonb))"
        ),
        {"id": profile_id, "ws": workspace_id, "uid": str(profile_id), "traits": traits},
    )
    for topic, granted in consents_:
        await session.execute(
            text(
                "INSERT INTO ingest.consents (profile_id, topic, workspace_id, granted, given_at) "
                "VALUES (:id, :topic, :ws, :granted, :at)"
            ),
            {"id": profile_id, "topic": topic, "ws": workspace_id, "granted": granted, "at": GIVEN},
        )
    return profile_id


async def test_recipient_loader_reads_a_batch_in_one_workspace(db, make_workspace, clock):
    a = (await make_workspace("다시 스토어")).workspace.id
    b = (await make_workspace("다른 스토어")).workspace.id
    async with session_scope(db) as session:
        kim = await _profile(
            session,
            a,
            '{"name": "김다시", "phone": "+82 10-1234-5678", "email": " Kim@Example.com ", '
            '"kakao_channel_friend": "Y", "push_tokens": ["tok-1", "tok-2"]}',
            [("sms", True), ("night", False)],
        )
        lee = await _profile(session, a, '{"name": "이단골", "push_token": "tok-9"}')
        other = await _profile(session, b, '{"phone": "01012345678"}', [("sms", True)])
        await add_suppressions(
            session,
            a,
            [
                NewSuppression("sms", "010-1234-5678", "080"),
                NewSuppression("push", "tok-9", "provider"),
                NewSuppression("email", "nobody@example.com", "manual"),
            ],
            clock.now(),
        )
        await add_suppressions(session, b, [NewSuppression("all", "01012345678", "manual")], clock.now())

    async with session_scope(db) as session:
        found = await load_recipients(session, a, [kim, lee, other, uuid.uuid4()])
    assert set(found) == {kim, lee}
    r = found[kim]
    assert (r.name, r.phone, r.email, r.push_tokens) == (
        "김다시",
        PHONE,
        "kim@example.com",
        ("tok-1", "tok-2"),
    )
    assert r.kakao_channel_friend
    assert r.consents == {"sms": ConsentFact(True, GIVEN), "night": ConsentFact(False, GIVEN)}
    assert r.ads_suppressed == frozenset({("sms", PHONE)})  # not B's "all" suppression of the same number
    assert r.suppressed == frozenset()  # a 080 opt-out stops ads only
    assert run(r, SMS_AD, seoul(23, 10)).reason is Reason.suppressed
    assert run(r, FRIENDTALK_AD, seoul(23, 10)).sends
    lee_r = found[lee]
    assert lee_r.phone is None and lee_r.push_tokens == ("tok-9",) and not lee_r.kakao_channel_friend
    assert lee_r.suppressed == frozenset({("push", "tok-9")})
    assert run(lee_r, SMS_INFO, seoul(23, 10)).reason is Reason.no_address
