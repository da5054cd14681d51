"""The member / channel-friend / granted-consent copies on `profile_aggregates` (ingest/flags.py)
follow their sources: identify traits, the latest consent, and identity merges."""

from __future__ import annotations

from sqlalchemy import select

from services.ingest.models import Profile, ProfileAggregates
from shared.db import session_scope
from tests.ingest.test_consents import identify

FLAGS = ("is_member", "kakao_channel_friend", "consent_sms", "consent_kakao", "consent_push", "consent_night")


async def flags_of(db, workspace_id) -> dict[str | None, dict[str, bool]]:
    async with session_scope(db) as session:
        rows = await session.execute(
            select(Profile.user_id, *(getattr(ProfileAggregates, f) for f in FLAGS))
            .join(Profile, Profile.id == ProfileAggregates.profile_id)
            .where(ProfileAggregates.workspace_id == workspace_id)
        )
        return {user: dict(zip(FLAGS, values, strict=True)) for user, *values in rows}


async def send(client, *batch) -> None:
    assert (await client.post("/v1/batch", json={"batch": list(batch)})).status_code == 200


async def test_flags_follow_traits_and_the_latest_consent(client, db, shop):
    await send(
        client,
        identify(
            "u-1",
            {
                "name": "김민지",
                "member": True,
                "kakao_channel_friend": True,
                "consents": {"sms": "Y", "night": "N"},
            },
            "2026-11-20T10:00:00+09:00",
            "m1",
        ),
        identify("u-2", {"member": "yes"}, "2026-11-20T10:00:00+09:00", "m2"),  # only `true` makes a member
    )
    assert await flags_of(db, shop.workspace.id) == {
        "u-1": {
            **dict.fromkeys(FLAGS, False),
            "is_member": True,
            "kakao_channel_friend": True,
            "consent_sms": True,
        },
        "u-2": dict.fromkeys(FLAGS, False),
    }

    await send(
        client, identify("u-1", {"sms_consent": False, "member": False}, "2026-11-21T10:00:00+09:00", "m3")
    )
    await send(
        client, identify("u-1", {"sms_consent": True}, "2026-11-01T10:00:00+09:00", "m4")
    )  # older: loses
    flags = (await flags_of(db, shop.workspace.id))["u-1"]
    assert (
        flags["consent_sms"] is False
        and flags["is_member"] is False
        and flags["kakao_channel_friend"] is True
    )


async def test_a_merged_profile_has_the_flags_of_both(client, db, shop):
    device = {
        "type": "identify",
        "anonymousId": "anon-7",
        "messageId": "d1",
        "timestamp": "2026-11-21T09:00:00Z",
        "traits": {"kakao_channel_friend": True, "consents": {"push": True}},
    }
    known = identify("u-1", {"member": True, "consents": {"sms": True}}, "2026-11-01T09:00:00Z", "k1")
    await send(client, known, device)
    await send(
        client,
        {"type": "track", "event": "Signed In", "userId": "u-1", "anonymousId": "anon-7", "messageId": "l1"},
    )
    flags = await flags_of(db, shop.workspace.id)
    assert set(flags) == {"u-1"}  # the anonymous profile and its row are gone
    assert flags["u-1"] == {
        **dict.fromkeys(FLAGS, False),
        "is_member": True,
        "kakao_channel_friend": True,
        "consent_sms": True,
        "consent_push": True,
    }
