"""The profile read API: a profile with identities, traits and every aggregate; finding one by
userId or anonymousId; its events newest first with a cursor that neither skips nor repeats; and
a key that never sees another workspace's profiles."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest
import pytest_asyncio

from services.ingest.main import create_app
from shared.testing.fixtures import serve
from tests.ingest.conftest import profiles_of, write_key
from tests.ingest.test_aggregates import HISTORY, kst, with_ids


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest_asyncio.fixture
async def manage(settings, clock, db, redis, shop) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the ingest app that sends `shop`'s secret key."""
    async with serve(create_app(settings, clock=clock), headers=bearer(shop.secret_key)) as http:
        yield http


async def send(client: httpx.AsyncClient, *messages: dict) -> None:
    response = await client.post("/v1/batch", json={"batch": list(messages)})
    assert response.status_code == 200, response.text


async def profile_id_of(db, workspace_id, user_id: str) -> str:
    [profile] = [p for p in await profiles_of(db, workspace_id) if p.user_id == user_id]
    return str(profile.id)


async def test_a_profile_shows_identities_traits_and_every_aggregate(client, manage, db, shop):
    await send(
        client,
        {"type": "identify", "userId": "user-1004", "anonymousId": "anon-7f3a", "traits": {"name": "김민지"}},
        *with_ids(HISTORY),
    )
    profile_id = await profile_id_of(db, shop.workspace.id, "user-1004")

    response = await manage.get(f"/v1/profiles/{profile_id}")

    assert response.status_code == 200, response.text
    profile = response.json()
    assert profile["id"] == profile_id and profile["user_id"] == "user-1004"
    assert profile["identities"] == [
        {"kind": "user_id", "value": "user-1004"},
        {"kind": "anonymous_id", "value": "anon-7f3a"},
    ]
    assert profile["traits"] == {"name": "김민지"}
    aggregates = times(profile["aggregates"])
    assert {k: v for k, v in aggregates.items() if not isinstance(v, dict | list)} == {
        "visit_count": 4,
        "first_visit_at": kst(20, 10, 0),
        "last_visit_at": kst(21, 0, 5),
        "last_seen_at": kst(21, 0, 20),
        "session_page_views": 2,
        "last_login_at": kst(21, 0, 6),
        "purchase_count": 1,
        "purchase_total": 30000.0,
        "last_purchase_at": kst(21, 0, 10),
    }
    assert times(aggregates["cart"]) == {
        "items": [aggregates["cart"]["items"][0]],
        "item_count": 1,
        "total": 18000.0,
        "last_added_at": kst(21, 0, 20),
    }
    assert times(aggregates["cart"]["items"][0]) == {
        "product_id": "P3",
        "name": "토너",
        "quantity": 1,
        "price": 18000.0,
        "added_at": kst(21, 0, 20),
    }
    viewed = [times(v) for v in aggregates["products_viewed"]]
    assert [(v["product_id"], v["name"], v["category"], v["brand"], v["view_count"]) for v in viewed] == [
        ("P1", "수분크림", "스킨케어", "다시랩", 1)
    ]
    assert viewed[0]["first_viewed_at"] == viewed[0]["last_viewed_at"] == kst(20, 10, 5)
    [coupon] = [times(c) for c in aggregates["coupons"]]
    assert (coupon["coupon_id"], coupon["name"]) == ("WELCOME10", "신규 10% 할인")
    assert coupon["expires_at"] == kst(30, 23, 59) + timedelta(seconds=59)


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


def times(obj: dict) -> dict:
    """The object with its `..._at` values as datetimes, to compare instants, not spellings."""
    return {k: parse(v) if k.endswith("_at") and isinstance(v, str) else v for k, v in obj.items()}


async def test_a_profile_without_events_that_count_has_empty_aggregates(client, manage, db, shop):
    await send(client, {"type": "identify", "userId": "user-1004", "traits": {"name": "김민지"}})
    profile_id = await profile_id_of(db, shop.workspace.id, "user-1004")

    aggregates = (await manage.get(f"/v1/profiles/{profile_id}")).json()["aggregates"]

    assert aggregates["visit_count"] == aggregates["purchase_count"] == 0
    assert aggregates["last_seen_at"] is None
    assert aggregates["cart"] == {"items": [], "item_count": 0, "total": 0.0, "last_added_at": None}
    assert aggregates["products_viewed"] == aggregates["coupons"] == []


async def test_products_viewed_are_the_most_recent_first(client, manage, db, shop):
    views = [
        {
            "type": "track",
            "userId": "user-1004",
            "event": "Product Viewed",
            "timestamp": kst(20, 10, minute).isoformat(),
            "properties": {"product_id": f"P{minute}", "name": f"상품{minute}"},
        }
        for minute in range(55)
    ]
    await send(client, *views)
    profile_id = await profile_id_of(db, shop.workspace.id, "user-1004")

    viewed = (await manage.get(f"/v1/profiles/{profile_id}")).json()["aggregates"]["products_viewed"]

    assert [v["product_id"] for v in viewed] == [f"P{minute}" for minute in range(54, 4, -1)]


async def test_a_profile_is_found_by_user_id_or_anonymous_id(client, manage, db, shop):
    await send(client, {"type": "identify", "userId": "user-1004", "anonymousId": "anon-7f3a"})
    profile_id = await profile_id_of(db, shop.workspace.id, "user-1004")

    by_user = await manage.get("/v1/profiles", params={"user_id": "user-1004"})
    by_anon = await manage.get("/v1/profiles", params={"anonymous_id": "anon-7f3a"})
    unknown = await manage.get("/v1/profiles", params={"user_id": "user-9999"})

    assert by_user.status_code == by_anon.status_code == 200
    assert by_user.json()["id"] == by_anon.json()["id"] == profile_id
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("params", [{}, {"user_id": "user-1004", "anonymous_id": "anon-7f3a"}])
async def test_finding_needs_exactly_one_id(manage, params):
    response = await manage.get("/v1/profiles", params=params)

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "query.user_id"


async def test_an_unknown_or_malformed_profile_id(manage):
    missing = await manage.get("/v1/profiles/5f0c1d7e-2b1a-4c7e-9d3f-8a6b4e2c1f00")
    malformed = await manage.get("/v1/profiles/not-a-uuid")

    assert missing.status_code == 404
    assert missing.json()["title"] == "Not found"
    assert malformed.status_code == 422


async def test_an_imported_member_reads_back_with_traits_and_consents(manage, shop):
    csv = (
        "회원ID,이름,휴대폰,SMS수신동의,카카오수신동의,야간수신동의\r\n"
        "user-1004,김민지,010-1234-5678,Y,N,N\r\n"
    )
    response = await manage.post(
        "/v1/profiles/import", files={"file": ("회원.csv", csv.encode("cp949"), "text/csv")}
    )
    assert response.json()["imported"] == 1

    profile = (await manage.get("/v1/profiles", params={"user_id": "user-1004"})).json()

    assert profile["identities"] == [{"kind": "user_id", "value": "user-1004"}]
    assert profile["traits"] == {
        "name": "김민지",
        "phone": "01012345678",
        "consents": {"sms": True, "kakao": False, "night": False},
        "consents_at": "2026-11-23T10:00:00+09:00",
    }


# -- events --------------------------------------------------------------------------------------


def page_view(minute: int, **fields) -> dict:
    return {
        "type": "page",
        "userId": "user-1004",
        "name": f"page-{minute}",
        "timestamp": kst(20, 10, minute).isoformat(),
        **fields,
    }


async def all_pages(manage: httpx.AsyncClient, profile_id: str, limit: int) -> list[list[str]]:
    pages: list[list[str]] = []
    params: dict[str, str | int] = {"limit": limit}
    while True:
        response = await manage.get(f"/v1/profiles/{profile_id}/events", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([e["name"] for e in body["events"]])
        if body["next_cursor"] is None:
            return pages
        params = {"limit": limit, "cursor": body["next_cursor"]}


async def test_events_come_newest_first_a_page_at_a_time(client, manage, db, shop):
    await send(client, *[page_view(minute) for minute in range(5)])
    profile_id = await profile_id_of(db, shop.workspace.id, "user-1004")

    pages = await all_pages(manage, profile_id, limit=2)

    assert pages == [["page-4", "page-3"], ["page-2", "page-1"], ["page-0"]]


async def test_paging_neither_skips_nor_repeats_events_of_the_same_instant(client, manage, db, shop):
    # no timestamps: all six happened when they arrived, at the same instant
    await send(client, *[{"type": "track", "userId": "user-1004", "event": f"e{i}"} for i in range(6)])
    profile_id = await profile_id_of(db, shop.workspace.id, "user-1004")

    pages = await all_pages(manage, profile_id, limit=4)

    assert [len(page) for page in pages] == [4, 2]
    assert sorted(name for page in pages for name in page) == [f"e{i}" for i in range(6)]


async def test_events_before_a_time(client, manage, db, shop):
    await send(client, *[page_view(minute) for minute in range(5)])
    profile_id = await profile_id_of(db, shop.workspace.id, "user-1004")

    response = await manage.get(
        f"/v1/profiles/{profile_id}/events", params={"before": kst(20, 10, 3).isoformat(), "limit": 50}
    )

    body = response.json()
    assert [e["name"] for e in body["events"]] == ["page-2", "page-1", "page-0"]
    assert body["next_cursor"] is None
    first = body["events"][0]
    assert first["type"] == "page" and first["message_id"]
    assert parse(first["occurred_at"]) == kst(20, 10, 2)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "not-a-cursor"}, "query.cursor"),
        ({"before": "2026-11-23T10:00:00"}, "query.before"),
        ({"before": "2026-11-23T10:00:00+09:00", "cursor": "x"}, "query.cursor"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 201}, "query.limit"),
    ],
)
async def test_bad_paging_is_a_422(client, manage, db, shop, params, field):
    await send(client, page_view(0))
    profile_id = await profile_id_of(db, shop.workspace.id, "user-1004")

    response = await manage.get(f"/v1/profiles/{profile_id}/events", params=params)

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == field


# -- isolation and keys --------------------------------------------------------------------------


async def test_a_key_never_sees_another_workspaces_profiles(settings, clock, db, redis, make_workspace):
    store_a = await make_workspace("다시 스토어")
    store_b = await make_workspace("김민지 공방")
    async with serve(create_app(settings, clock=clock)) as client:
        tracked = await client.post(
            "/v1/batch",
            json={
                "batch": [
                    {"type": "identify", "userId": "user-1004", "anonymousId": "anon-7f3a"},
                    page_view(0),
                ]
            },
            headers=write_key(store_a.write_key),
        )
        assert tracked.status_code == 200
        profile_id = await profile_id_of(db, store_a.workspace.id, "user-1004")
        as_b = bearer(store_b.secret_key)
        answers = [
            await client.get(f"/v1/profiles/{profile_id}", headers=as_b),
            await client.get(f"/v1/profiles/{profile_id}/events", headers=as_b),
            await client.get("/v1/profiles", params={"user_id": "user-1004"}, headers=as_b),
            await client.get("/v1/profiles", params={"anonymous_id": "anon-7f3a"}, headers=as_b),
        ]
        as_a = await client.get(f"/v1/profiles/{profile_id}/events", headers=bearer(store_a.secret_key))

    assert [a.status_code for a in answers] == [404, 404, 404, 404]
    assert all(a.headers["content-type"] == "application/problem+json" for a in answers)
    assert not any({"identities", "traits"} & set(a.json()) for a in answers)
    assert len(as_a.json()["events"]) == 2


async def test_only_a_secret_key_reads_profiles(manage, shop):
    for headers in ({"Authorization": ""}, write_key(shop.write_key), bearer("dasi_sk_not-a-real-key")):
        response = await manage.get("/v1/profiles", params={"user_id": "user-1004"}, headers=headers)
        assert response.status_code == 401


async def test_the_schema_documents_the_profile_routes(manage):
    schema = (await manage.get("/openapi.json")).json()

    operations = {
        op["operationId"]: op
        for path in schema["paths"].values()
        for op in path.values()
        if "profiles" in op["tags"]
    }
    assert set(operations) == {"profiles_import", "profiles_get", "profiles_find", "profiles_events"}
    for operation in operations.values():
        assert "application/problem+json" in operation["responses"]["401"]["content"]
        assert "application/problem+json" in operation["responses"]["422"]["content"]
    for name in ("profiles_get", "profiles_find", "profiles_events"):
        assert "404" in operations[name]["responses"]
    imported = operations["profiles_import"]
    assert {"413", "415"} <= set(imported["responses"])
    form = imported["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"] and form["properties"]["file"]["format"] == "binary"
    assert "휴대폰번호" in imported["description"] and "SMS수신동의" in imported["description"]
    components = json.dumps(schema["components"]["schemas"], ensure_ascii=False)
    assert "김민지" in components and "수분크림" in components


async def test_events_move_with_the_clock(client, manage, db, shop, clock):
    await send(client, {"type": "track", "userId": "user-1004", "event": "first"})
    clock.advance(timedelta(minutes=5))
    await send(client, {"type": "track", "userId": "user-1004", "event": "second"})
    profile_id = await profile_id_of(db, shop.workspace.id, "user-1004")

    events = (await manage.get(f"/v1/profiles/{profile_id}/events")).json()["events"]

    assert [e["name"] for e in events] == ["second", "first"]
    assert parse(events[0]["occurred_at"]) - parse(events[1]["occurred_at"]) == timedelta(minutes=5)
