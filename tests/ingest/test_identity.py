"""Identity: an anonymous shopper who is later identified (or aliased) is one profile; traits merge."""

from __future__ import annotations

import asyncio
import uuid

from services.ingest.identity import ANONYMOUS_ID, USER_ID, Ids, Resolver, new_profile_id
from tests.ingest.conftest import events_of, identities_of, profiles_of, track


async def test_an_anonymous_shopper_identified_later_keeps_one_profile(client, db, shop):
    await client.post("/v1/track", json=track("Product Viewed", anonymousId="anon-7f3a"))
    await client.post(
        "/v1/identify", json={"anonymousId": "anon-7f3a", "userId": "user-1004", "traits": {"name": "김민지"}}
    )
    await client.post("/v1/track", json=track("Order Completed", userId="user-1004"))

    [profile] = await profiles_of(db, shop.workspace.id)
    assert profile.user_id == "user-1004" and profile.traits == {"name": "김민지"}
    assert {e.profile_id for e in await events_of(db, shop.workspace.id)} == {profile.id}
    assert await identities_of(db, shop.workspace.id) == {
        (ANONYMOUS_ID, "anon-7f3a"): profile.id,
        (USER_ID, "user-1004"): profile.id,
    }


async def test_traits_are_merged_not_replaced(client, db, shop):
    await client.post(
        "/v1/identify", json={"userId": "user-1004", "traits": {"name": "김민지", "grade": "silver"}}
    )
    await client.post(
        "/v1/identify", json={"userId": "user-1004", "traits": {"grade": "gold", "city": "서울"}}
    )

    [profile] = await profiles_of(db, shop.workspace.id)
    assert profile.traits == {"name": "김민지", "grade": "gold", "city": "서울"}


async def test_a_second_device_is_merged_into_the_known_shopper(client, db, shop):
    await client.post("/v1/identify", json={"userId": "user-1004", "traits": {"name": "김민지"}})
    # on a new phone, browsing anonymously: a profile of its own for now
    await client.post(
        "/v1/batch",
        json={
            "batch": [
                track("Product Viewed", anonymousId="phone-2"),
                {"type": "identify", "anonymousId": "phone-2", "traits": {"app": "ios"}},
            ]
        },
    )
    assert len(await profiles_of(db, shop.workspace.id)) == 2

    await client.post("/v1/track", json=track("Signed In", userId="user-1004", anonymousId="phone-2"))

    [profile] = await profiles_of(db, shop.workspace.id)
    assert profile.user_id == "user-1004"
    assert profile.traits == {"name": "김민지", "app": "ios"}
    assert {e.profile_id for e in await events_of(db, shop.workspace.id)} == {profile.id}
    assert set((await identities_of(db, shop.workspace.id)).values()) == {profile.id}


async def test_alias_joins_the_previous_id_to_the_user(client, db, shop):
    await client.post("/v1/track", json=track("Cart Viewed", anonymousId="anon-1"))
    await client.post("/v1/identify", json={"userId": "new-1004", "traits": {"name": "김민지"}})

    response = await client.post("/v1/alias", json={"previousId": "anon-1", "userId": "new-1004"})

    assert response.status_code == 200
    [profile] = await profiles_of(db, shop.workspace.id)
    assert profile.user_id == "new-1004"
    assert {e.profile_id for e in await events_of(db, shop.workspace.id)} == {profile.id}


async def test_an_anonymous_id_of_one_user_does_not_swallow_another_user(client, db, shop):
    await client.post("/v1/identify", json={"userId": "mom", "anonymousId": "family-tablet"})
    await client.post("/v1/identify", json={"userId": "son", "anonymousId": "family-tablet"})
    await client.post("/v1/track", json=track(anonymousId="family-tablet"))

    profiles = {p.user_id: p.id for p in await profiles_of(db, shop.workspace.id)}
    assert set(profiles) == {"mom", "son"}
    identities = await identities_of(db, shop.workspace.id)
    assert identities[(ANONYMOUS_ID, "family-tablet")] == profiles["mom"]
    assert identities[(USER_ID, "son")] == profiles["son"]


# -- the resolver alone, without a database ------------------------------------------------------


def test_new_profile_ids_are_time_ordered_uuids_equal_to_the_stdlibs():
    first = new_profile_id()
    assert isinstance(first, uuid.UUID) and first.version == 7  # time-ordered, as event ids
    same = uuid.UUID(str(first))
    assert first == same and hash(first) == hash(same) and {first: 1}[same] == 1


def test_resolver_links_ids_seen_together_in_one_batch():
    plan = Resolver(known={}, users={}).resolve(
        [Ids(None, "a1"), Ids("u1", "a1", traits={"name": "김민지"}), Ids("u1", None)]
    )

    [profile] = plan.new_profiles
    assert plan.profile_of_message == [profile, profile, profile]
    assert plan.new_profiles == {profile: "u1"}
    assert plan.new_identities == {(ANONYMOUS_ID, "a1"): profile, (USER_ID, "u1"): profile}
    assert plan.traits == {profile: {"name": "김민지"}} and plan.merges == []


def test_resolver_merges_an_anonymous_profile_into_the_known_user():
    user, anonymous = uuid.uuid4(), uuid.uuid4()
    resolver = Resolver(
        known={(USER_ID, "u1"): user, (ANONYMOUS_ID, "a2"): anonymous}, users={user: "u1", anonymous: None}
    )

    plan = resolver.resolve([Ids(None, "a2", traits={"app": "ios"}), Ids("u1", "a2")])

    assert plan.merges == [(anonymous, user)]
    assert plan.profile_of_message == [user, user]  # the earlier message follows the merge too
    assert plan.traits == {user: {"app": "ios"}}
    assert plan.new_profiles == {} and plan.new_identities == {}


async def test_concurrent_calls_for_a_new_shopper_make_one_profile(client, db, shop):
    calls = [
        client.post("/v1/track", json=track(f"Viewed {n}", anonymousId="anon-race", userId="user-race"))
        for n in range(8)
    ]
    answers = await asyncio.gather(*calls)

    assert [a.status_code for a in answers] == [200] * 8
    [profile] = await profiles_of(db, shop.workspace.id)
    assert {e.profile_id for e in await events_of(db, shop.workspace.id)} == {profile.id}
