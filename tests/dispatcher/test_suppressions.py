"""The suppression list's repository: idempotent adds, normalized addresses, batch lookups, one
workspace at a time."""

from __future__ import annotations

import uuid

from services.dispatcher.suppressions import (
    NewSuppression,
    add_suppression,
    add_suppressions,
    is_suppressed,
    list_suppressions,
    normalize_address,
    remove_suppression,
    suppressed_addresses,
)
from shared.db import session_scope


def test_addresses_are_normalized():
    assert normalize_address("sms", "010-1234-5678") == "01012345678"
    assert normalize_address("kakao", "+82 10 1234 5678") == "01012345678"
    assert normalize_address("email", " Kim@Example.COM ") == "kim@example.com"
    assert normalize_address("all", "Kim@Example.com") == "kim@example.com"
    assert normalize_address("all", "010.1234.5678") == "010.1234.5678"  # not a phone shape: kept
    assert normalize_address("all", "010-1234-5678") == "01012345678"
    assert normalize_address("push", "fcm:AbC") == "fcm:AbC"
    profile = f"profile:{uuid.UUID(int=7)}"
    assert normalize_address("sms", profile) == profile


async def test_adding_is_idempotent_and_lookups_are_batched(db, make_workspace, clock):
    a = (await make_workspace("다시 스토어")).workspace.id
    b = (await make_workspace("다른 스토어")).workspace.id
    async with session_scope(db) as session:
        first = await add_suppressions(
            session,
            a,
            [
                NewSuppression("sms", "010-1234-5678", "080", reason="080 수신거부"),
                NewSuppression("sms", "01012345678", "080"),  # the same, twice in one batch
                NewSuppression("email", "Kim@Example.com", "email_one_click"),
                NewSuppression("all", "01099998888", "manual"),
            ],
            clock.now(),
        )
        again = await add_suppressions(
            session, a, [NewSuppression("sms", "+82 10 1234 5678", "provider")], clock.now()
        )
    assert (first, again) == (3, 0)

    async with session_scope(db) as session:
        row, created = await add_suppression(
            session, a, NewSuppression("sms", "010-1234-5678", "manual"), clock.now()
        )
        assert not created and row.source == "080" and row.reason == "080 수신거부"
        asked = ["01012345678", "01099998888", "01000000000", "kim@example.com"]
        assert await suppressed_addresses(session, a, "sms", asked) == {"01012345678", "01099998888"}
        assert await suppressed_addresses(session, a, "kakao", asked) == {"01099998888"}
        assert await suppressed_addresses(session, a, "email", ["kim@example.com", "lee@example.com"]) == {
            "kim@example.com"
        }
        assert await is_suppressed(session, a, "sms", "01012345678")
        assert not await is_suppressed(session, b, "sms", "01012345678")  # B has its own list
        assert await list_suppressions(session, b) == []
        listed = await list_suppressions(session, a, channel="sms")
        assert [s.address for s in listed] == ["01012345678"]
        assert not await remove_suppression(session, b, listed[0].id)  # B cannot lift A's
        assert await remove_suppression(session, a, listed[0].id)
        assert not await is_suppressed(session, a, "sms", "01012345678")
