"""Workspace isolation: a write key writes into its own workspace only, and ids, message ids and
profiles of two stores never mix."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from services.ingest import aggregates, repository, service
from services.ingest.identity import Plan
from services.ingest.main import create_app
from services.ingest.models import ProfileAggregates
from services.ingest.schemas import TrackMessage
from shared.db import driver_transaction, session_scope
from shared.testing.fixtures import serve
from tests.ingest.conftest import events_of, identities_of, profiles_of, track, write_key


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


async def test_a_login_merges_the_visitor_only_in_its_own_store(settings, clock, db, redis, make_workspace):
    """The same visitor and member ids in two stores: a login in one merges there only."""
    store_a = await make_workspace("다시 스토어")
    store_b = await make_workspace("김민지 공방")
    history = [
        track("Product Viewed", anonymousId="anon-7", properties={"product_id": "P1", "name": "수분크림"}),
        {"type": "identify", "userId": "user-7", "traits": {"name": "김민지"}},
    ]
    login = {"type": "identify", "userId": "user-7", "anonymousId": "anon-7"}
    async with serve(create_app(settings, clock=clock)) as client:
        for store in (store_a, store_b):
            answer = await client.post(
                "/v1/batch", json={"batch": history}, headers=write_key(store.write_key)
            )
            assert answer.status_code == 200, answer.text
        answer = await client.post("/v1/batch", json={"batch": [login]}, headers=write_key(store_a.write_key))
        assert answer.status_code == 200, answer.text

    assert len(await profiles_of(db, store_a.workspace.id)) == 1  # the visitor merged into the member
    assert len(await profiles_of(db, store_b.workspace.id)) == 2  # untouched: still two shoppers
    identities_b = await identities_of(db, store_b.workspace.id)
    assert identities_b[("anonymous_id", "anon-7")] != identities_b[("user_id", "user-7")]


async def _aggregates_of(db, workspace_id) -> dict:
    async with session_scope(db) as session:
        rows = await session.scalars(
            select(ProfileAggregates).where(ProfileAggregates.workspace_id == workspace_id)
        )
        return {row.profile_id: (row.visit_count, row.last_login_at) for row in rows}


async def test_a_merge_plan_naming_another_stores_profiles_moves_nothing(db, make_workspace):
    """The merge and recompute statements check the profiles against the workspace, whatever the
    plan says."""
    store_a = (await make_workspace("다시 스토어")).workspace
    store_b = (await make_workspace("김민지 공방")).workspace
    async with session_scope(db) as session:
        await service.record_messages(
            session,
            store_b.id,
            [
                TrackMessage.model_validate({"type": "track", "anonymousId": "anon-7", "event": "Signed Up"}),
                TrackMessage.model_validate({"type": "track", "userId": "user-7", "event": "Signed In"}),
            ],
            timezone=store_b.timezone,
            received_at=datetime(2026, 11, 24, 12, 0, tzinfo=UTC),
        )
    before = await identities_of(db, store_b.id)
    source, target = before[("anonymous_id", "anon-7")], before[("user_id", "user-7")]
    aggregates_before = await _aggregates_of(db, store_b.id)

    async with driver_transaction(db) as connection:
        plan = Plan(merges=[(source, target)])
        await repository.apply_merges(connection, store_a.id, plan, datetime(2026, 11, 24, 12, 1, tzinfo=UTC))
        await aggregates.recompute(connection, store_a.id, store_a.timezone, [source, target])

    assert await _aggregates_of(db, store_b.id) == aggregates_before

    assert await identities_of(db, store_b.id) == before
    assert {p.id for p in await profiles_of(db, store_b.id)} == {source, target}
    assert {e.profile_id for e in await events_of(db, store_b.id)} == {source, target}
