"""Consent per channel and night consent from identify traits: both shapes, the time given, the
latest word wins whatever the arrival order, and a merge keeps the latest of both profiles."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from services.ingest.consents import parse_granted
from services.ingest.models import Consent, Profile
from shared.db import session_scope

KST = timezone(timedelta(hours=9))


async def consents_of(db, workspace_id) -> dict[tuple[str | None, str], tuple[bool, datetime]]:
    async with session_scope(db) as session:
        rows = await session.execute(
            select(Profile.user_id, Consent.topic, Consent.granted, Consent.given_at)
            .join(Profile, Profile.id == Consent.profile_id)
            .where(Consent.workspace_id == workspace_id)
        )
        return {(user, topic): (granted, at) for user, topic, granted, at in rows}


def identify(user: str, traits: dict, when: str, message_id: str, **extra) -> dict:
    return {
        "type": "identify",
        "userId": user,
        "traits": traits,
        "timestamp": when,
        "messageId": message_id,
        **extra,
    }


async def test_nested_and_flat_shapes_with_the_time_given(client, db, shop):
    given = "2026-11-01T09:00:00+09:00"
    batch = [
        identify(
            "u-1",
            {
                "name": "김민지",
                "consents": {
                    "sms": True,
                    "kakao": {"granted": False, "at": given},
                    "push": "Y",
                    "email": "동의",
                    "night": "거부",
                },
            },
            "2026-11-20T10:00:00+09:00",
            "m1",
        ),
        identify(
            "u-2",
            {"sms_consent": "N", "night_consent": True, "consents_at": given},
            "2026-11-20T10:00:00+09:00",
            "m2",
        ),
    ]
    assert (await client.post("/v1/batch", json={"batch": batch})).status_code == 200
    stored = await consents_of(db, shop.workspace.id)
    at_identify = datetime(2026, 11, 20, 10, 0, tzinfo=KST)
    at_given = datetime(2026, 11, 1, 9, 0, tzinfo=KST)
    assert stored == {
        ("u-1", "sms"): (True, at_identify),
        ("u-1", "kakao"): (False, at_given),
        ("u-1", "push"): (True, at_identify),
        ("u-1", "email"): (True, at_identify),
        ("u-1", "night"): (False, at_identify),
        ("u-2", "sms"): (False, at_given),
        ("u-2", "night"): (True, at_given),
    }


async def test_the_latest_word_wins_in_any_arrival_order(client, db, shop):
    opted_out = identify("u-1", {"consents": {"sms": False}}, "2026-11-21T10:00:00+09:00", "late-no")
    old_yes = identify("u-1", {"consents": {"sms": True}}, "2026-11-01T10:00:00+09:00", "old-yes")
    assert (await client.post("/v1/batch", json={"batch": [opted_out]})).status_code == 200
    assert (await client.post("/v1/batch", json={"batch": [old_yes]})).status_code == 200  # replayed later
    both_in_one = [
        identify("u-2", {"sms_consent": False}, "2026-11-21T10:00:00+09:00", "b-no"),
        identify("u-2", {"sms_consent": True}, "2026-11-01T10:00:00+09:00", "b-yes"),
    ]
    assert (await client.post("/v1/batch", json={"batch": both_in_one})).status_code == 200
    stored = await consents_of(db, shop.workspace.id)
    assert stored[("u-1", "sms")][0] is False
    assert stored[("u-2", "sms")][0] is False


async def test_unreadable_values_are_ignored_not_guessed(client, db, shop):
    batch = [
        identify(
            "u-1", {"consents": {"sms": "maybe", "email": None, "fax": True}}, "2026-11-20T10:00:00Z", "m"
        )
    ]
    assert (await client.post("/v1/batch", json={"batch": batch})).status_code == 200
    assert await consents_of(db, shop.workspace.id) == {}
    assert parse_granted("수신거부") is False and parse_granted(" Y ") is True and parse_granted([]) is None


async def test_a_merge_keeps_the_latest_consent_of_both_profiles(client, db, shop):
    anonymous = "anon-42"
    device = {
        "type": "identify",
        "anonymousId": anonymous,
        "messageId": "d1",
        "timestamp": "2026-11-21T09:00:00Z",
        "traits": {"consents": {"push": True, "sms": False}},
    }
    known = identify("u-1", {"consents": {"sms": True, "email": True}}, "2026-11-01T09:00:00Z", "k1")
    assert (await client.post("/v1/batch", json={"batch": [known, device]})).status_code == 200
    login = {
        "type": "track",
        "event": "Signed In",
        "userId": "u-1",
        "anonymousId": anonymous,
        "messageId": "l1",
    }
    assert (await client.post("/v1/batch", json={"batch": [login]})).status_code == 200
    stored = await consents_of(db, shop.workspace.id)
    assert {topic: granted for (user, topic), (granted, _) in stored.items()} == {
        "sms": False,  # the device's later "no" beats the older "yes"
        "email": True,
        "push": True,
    }
    assert {user for user, _topic in stored} == {"u-1"}
