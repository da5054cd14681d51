"""The Segment-compatible tracking API: round trips, dedupe, clock skew, gzip, size limits, and a
bad message in a batch that costs only itself."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta

import pytest

from shared.testing.plugin import DEFAULT_TEST_NOW
from tests.ingest.conftest import events_of, profiles_of, published, track, unpublished


async def test_batch_round_trip_stores_events_profiles_and_announces_them(client, db, redis, shop):
    response = await client.post(
        "/v1/batch",
        json={
            "batch": [
                {"type": "identify", "userId": "user-1004", "traits": {"name": "김민지"}},
                track(userId="user-1004"),
                {"type": "page", "userId": "user-1004", "name": "기획전", "category": "sale"},
            ]
        },
    )

    assert response.status_code == 200
    assert response.json() == {"success": True, "accepted": 3, "duplicates": 0, "rejected": [], "errors": []}
    events = await events_of(db, shop.workspace.id)
    assert sorted((e.type, e.name) for e in events) == [
        ("identify", None),
        ("page", "기획전"),
        ("track", "Product Viewed"),
    ]
    viewed = next(e for e in events if e.type == "track")
    assert viewed.properties == {"product": "수분크림", "price": 28000}
    assert viewed.occurred_at == viewed.received_at == DEFAULT_TEST_NOW
    [profile] = await profiles_of(db, shop.workspace.id)
    assert profile.user_id == "user-1004" and profile.traits == {"name": "김민지"}
    assert {e.profile_id for e in events} == {profile.id}
    # the request committed each event with its outbox row; the ingest worker's publisher announces them
    assert len(await unpublished(db)) == 3 and await redis.xrange("dasi:events") == []

    announced = await published(db, redis)
    assert {m.event_id for m in announced} == {e.id for e in events}
    assert {(m.type, m.name) for m in announced} >= {("track", "Product Viewed"), ("identify", None)}
    assert all(m.workspace_id == shop.workspace.id and m.profile_id == profile.id for m in announced)
    assert await unpublished(db) == []  # published, so nothing left


@pytest.mark.parametrize(
    ("path", "body", "kind", "name"),
    [
        (
            "/v1/track",
            {"userId": "u1", "event": "Order Completed", "properties": {"revenue": 56000}},
            "track",
            "Order Completed",
        ),
        ("/v1/identify", {"userId": "u1", "traits": {"name": "김민지"}}, "identify", None),
        ("/v1/page", {"anonymousId": "a1", "name": "수분크림 상세"}, "page", "수분크림 상세"),
        ("/v1/screen", {"anonymousId": "a1", "name": "장바구니"}, "screen", "장바구니"),
        ("/v1/group", {"userId": "u1", "groupId": "vip", "traits": {"tier": "gold"}}, "group", "vip"),
        ("/v1/alias", {"userId": "u1", "previousId": "a1"}, "alias", None),
    ],
)
async def test_each_single_call_answers_like_segment(client, db, shop, path, body, kind, name):
    response = await client.post(path, json=body)

    assert response.status_code == 200
    assert response.json()["success"] is True
    [event] = await events_of(db, shop.workspace.id)
    assert (event.type, event.name) == (kind, name)


async def test_a_repeated_message_id_is_accepted_and_ignored(client, db, redis, shop):
    message = track(userId="user-1004", messageId="msg-1")

    first = await client.post("/v1/track", json=message)
    again = await client.post("/v1/batch", json={"batch": [message, {**message, "event": "Other"}]})

    assert first.json()["duplicates"] == 0
    assert again.status_code == 200
    assert again.json() | {"errors": []} == {
        "success": True,
        "accepted": 2,
        "duplicates": 2,
        "rejected": [],
        "errors": [],
    }
    assert [e.message_id for e in await events_of(db, shop.workspace.id)] == ["msg-1"]
    assert len(await published(db, redis)) == 1


@pytest.mark.parametrize("message_id", ['주문-"1004"\\완료 🛒', "tab\there"])
async def test_any_text_is_a_message_id_that_dedupes(client, db, shop, message_id):
    message = track(userId="user-1004", messageId=message_id)
    assert (await client.post("/v1/track", json=message)).json()["duplicates"] == 0
    assert (await client.post("/v1/batch", json={"batch": [message]})).json()["duplicates"] == 1
    assert [e.message_id for e in await events_of(db, shop.workspace.id)] == [message_id]


async def test_a_repeat_inside_one_batch_is_stored_once(client, db, shop):
    message = track(anonymousId="anon-7f3a", messageId="same")
    response = await client.post("/v1/batch", json={"batch": [message, message, message]})

    assert response.json()["duplicates"] == 2
    assert len(await events_of(db, shop.workspace.id)) == 1


async def test_a_missing_message_id_is_generated(client, db, shop):
    await client.post("/v1/batch", json={"batch": [track(userId="u1"), track(userId="u1")]})

    events = await events_of(db, shop.workspace.id)
    assert len(events) == 2 and len({e.message_id for e in events}) == 2


async def test_clock_skew_is_corrected_with_sent_at(client, db, shop):
    # the phone's clock is an hour behind: it says it sent at 09:00 what happened two seconds earlier
    phone_sent = DEFAULT_TEST_NOW - timedelta(hours=1)
    happened = phone_sent - timedelta(seconds=2)
    batch = {
        "sentAt": phone_sent.isoformat(),
        "batch": [
            track("Cart Viewed", userId="u1", timestamp=happened.isoformat()),
            track("Own sentAt", userId="u1", timestamp=happened.isoformat(), sentAt=happened.isoformat()),
        ],
    }
    await client.post("/v1/batch", json=batch)
    await client.post(
        "/v1/track", json=track("No sentAt", userId="u1", timestamp="2026-11-23T09:30:00+09:00")
    )
    await client.post("/v1/track", json=track("No timestamp", userId="u1"))

    occurred = {e.name: e.occurred_at for e in await events_of(db, shop.workspace.id)}
    assert occurred["Cart Viewed"] == DEFAULT_TEST_NOW - timedelta(seconds=2)
    assert occurred["Own sentAt"] == DEFAULT_TEST_NOW  # its own sentAt wins over the batch's
    assert occurred["No sentAt"] == DEFAULT_TEST_NOW - timedelta(minutes=30)  # trusted as given
    assert occurred["No timestamp"] == DEFAULT_TEST_NOW


async def test_gzip_bodies_are_accepted(client, db, shop):
    body = gzip.compress(json.dumps({"batch": [track(userId="user-1004")]}).encode())

    response = await client.post(
        "/v1/batch", content=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )

    assert response.status_code == 200
    [event] = await events_of(db, shop.workspace.id)
    assert event.properties["product"] == "수분크림"


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b"not gzip", {"Content-Encoding": "gzip"}, 400),
        (gzip.compress(b'{"batch": [')[:-6], {"Content-Encoding": "gzip"}, 400),
        (b"{}", {"Content-Encoding": "br"}, 415),
        (b"{not json", {}, 400),
        (b'{"batch": "nope"}', {}, 422),
    ],
)
async def test_unreadable_bodies_get_a_problem(client, db, shop, content, headers, status):
    response = await client.post("/v1/batch", content=content, headers=headers)

    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert await events_of(db, shop.workspace.id) == []


async def test_size_limits_answer_413(client, db, shop):
    big = "가" * 11_000  # 33 KB in UTF-8
    single = await client.post("/v1/track", json=track(userId="u1", properties={"memo": big}))
    batch = await client.post(
        "/v1/batch", json={"batch": [track(userId="u1", properties={"memo": "x" * 30_000})] * 18}
    )
    bomb = await client.post(
        "/v1/batch",
        content=gzip.compress(json.dumps({"batch": [], "pad": " " * 600_000}).encode()),
        headers={"Content-Encoding": "gzip"},
    )

    for response in (single, batch, bomb):
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("/payload-too-large")
    assert await events_of(db, shop.workspace.id) == []


async def test_a_bad_message_in_a_batch_is_reported_and_the_others_are_kept(client, db, redis, shop):
    batch = [
        track("Product Viewed", userId="u1"),
        track("Cart Viewed"),  # neither userId nor anonymousId
        track("Order Completed", anonymousId="anon-1"),
        {"type": "purchase", "userId": "u1"},  # no such type
        {"type": "track", "userId": "u1"},  # no event name
        track(userId="u1", properties={"memo": "x" * 33_000}),  # over 32 KB by itself
    ]

    response = await client.post("/v1/batch", json={"batch": batch})

    assert response.status_code == 200
    result = response.json()
    assert result["accepted"] == 2 and result["rejected"] == [1, 3, 4, 5]
    assert [(e["field"], e["type"]) for e in result["errors"]] == [
        ("body.batch.1.userId", "missing"),
        ("body.batch.3.type", "union_tag_invalid"),
        ("body.batch.4.event", "missing"),
        ("body.batch.5", "too_large"),
    ]
    assert sorted(e.name for e in await events_of(db, shop.workspace.id)) == [
        "Order Completed",
        "Product Viewed",
    ]
    assert len(await published(db, redis)) == 2


async def test_a_batch_with_no_valid_message_is_422_and_stores_nothing(client, db, shop):
    response = await client.post("/v1/batch", json={"batch": [track(), {"type": "track"}]})

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == ["body.batch.0.userId", "body.batch.1.event"]
    assert await events_of(db, shop.workspace.id) == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/track", {"userId": "u1"}, "body.event"),
        ("/v1/track", {"event": "Product Viewed"}, "body.userId"),
        ("/v1/track", {"type": "identify", "userId": "u1", "event": "x"}, "body.type"),
        ("/v1/alias", {"userId": "u1"}, "body.previousId"),
        ("/v1/identify", {"userId": "u1", "traits": ["김민지"]}, "body.traits"),
        ("/v1/identify", ["not", "an", "object"], "body"),
    ],
)
async def test_an_invalid_single_call_names_the_wrong_field(client, db, shop, path, body, field):
    response = await client.post(path, json=body)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]
    assert await profiles_of(db, shop.workspace.id) == []


async def test_the_schema_documents_every_tracking_route(client):
    schema = (await client.get("/openapi.json")).json()

    operations = {
        op["operationId"]: op
        for path in schema["paths"].values()
        for op in path.values()
        if "tracking" in op["tags"]
    }
    assert set(operations) == {
        f"tracking_{kind}" for kind in ("batch", "track", "identify", "page", "screen", "group", "alias")
    }
    components = schema["components"]["schemas"]
    for operation in operations.values():
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.removeprefix("#/components/schemas/") in components
        assert {"200", "401", "413", "422"} <= set(operation["responses"])
        assert "application/problem+json" in operation["responses"]["413"]["content"]
    assert "수분크림" in json.dumps(components["BatchRequest"], ensure_ascii=False)


async def test_nul_characters_do_not_cost_the_message(client, db, shop):
    body = (
        '{"batch": [{"type": "track", "userId": "u-\\u0000-1", "event": "Product\\u0000 Viewed", '
        '"properties": {"name": "수분\\u0000크림", "escaped": "\\\\u0000"}}]}'
    )
    response = await client.post(
        "/v1/batch", content=body.encode(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    [event] = await events_of(db, shop.workspace.id)
    assert event.name == "Product\ufffd Viewed"
    assert event.properties == {"name": "수분\ufffd크림", "escaped": "\\u0000"}


async def test_a_batch_naming_thousands_of_shoppers_is_stored(client, db, shop):
    batch = [
        {"type": "track", "event": "Signed In", "userId": f"u{i}", "anonymousId": f"a{i}"}
        for i in range(6000)
    ]
    response = await client.post("/v1/batch", json={"batch": batch})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 6000


async def test_each_event_gets_its_own_time_ordered_id(client, db, shop):
    """Version 7: the events' key index takes new events at its end (services/ingest/service.py)."""
    stored: list[set] = []
    for _ in range(2):
        batch = [track(userId="user-1004") for _ in range(50)]
        assert (await client.post("/v1/batch", json={"batch": batch})).json()["accepted"] == 50
        stored.append({e.id for e in await events_of(db, shop.workspace.id)} - set().union(*stored))
    first, second = stored
    assert len(first) == len(second) == 50 and {i.version for i in first | second} == {7}
    assert max(first) < min(second)  # later requests, later ids
