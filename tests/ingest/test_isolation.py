"""Workspace isolation: a write key writes into its own workspace only, and ids, message ids and
profiles of two stores never mix."""

from __future__ import annotations

from services.ingest.main import create_app
from shared.testing.fixtures import serve
from tests.ingest.conftest import events_of, profiles_of, track, write_key


async def test_two_stores_never_see_each_others_data(settings, clock, db, redis, make_workspace):
    store_a = await make_workspace("다시 스토어")
    store_b = await make_workspace("김민지 공방")
    same = track("Product Viewed", userId="user-1004", messageId="msg-1")
    async with serve(create_app(settings, clock=clock)) as client:
        a = await client.post("/v1/track", json=same, headers=write_key(store_a.write_key))
        b = await client.post(
            "/v1/track", json={**same, "event": "Order Completed"}, headers=write_key(store_b.write_key)
        )

    assert a.json()["duplicates"] == b.json()["duplicates"] == 0  # message ids are per workspace
    [event_a] = await events_of(db, store_a.workspace.id)
    [event_b] = await events_of(db, store_b.workspace.id)
    assert (event_a.name, event_b.name) == ("Product Viewed", "Order Completed")
    [profile_a] = await profiles_of(db, store_a.workspace.id)
    [profile_b] = await profiles_of(db, store_b.workspace.id)
    assert profile_a.id != profile_b.id  # the same userId in two stores is two shoppers
    assert (event_a.profile_id, event_b.profile_id) == (profile_a.id, profile_b.id)


async def test_only_a_valid_write_key_opens_ingestion(settings, clock, db, redis, make_workspace):
    shop = await make_workspace()
    async with serve(create_app(settings, clock=clock)) as client:
        answers = [
            await client.post("/v1/batch", json={"batch": [track(userId="u1")]}, headers=headers)
            for headers in (
                {},
                write_key("dasi_wk_not-a-real-key"),
                write_key(shop.secret_key),  # a secret key never opens ingestion
                {"Authorization": f"Bearer {shop.secret_key}"},
            )
        ]

    for response in answers:
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Basic")
    assert await events_of(db, shop.workspace.id) == []
