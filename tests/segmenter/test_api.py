"""The segments API: saved segments, segments inside segments (with cycles refused), invalid
definitions answered 422 with the path of the wrong value, keys that open one workspace only."""

from __future__ import annotations

import uuid

import pytest

CART = {"include": {"type": "cart_item_count", "gte": 1}}
NO_RECENT_PURCHASE = {"include": {"type": "last_purchase", "not_within_days": 7}}


async def create(shop, name, definition, **fields):
    response = await shop.api.post("/v1/segments", json={"name": name, "definition": definition, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def uses(segment):
    return {"type": "segment", "segment_id": segment["id"]}


async def test_saved_segments_crud(shop):
    saved = await create(shop, "장바구니 이탈 고객", CART, description="장바구니에 상품이 남은 고객")
    assert saved["name"] == "장바구니 이탈 고객"
    assert saved["definition"] == {"include": {"type": "cart_item_count", "gte": 1}, "exclude": []}
    assert saved["created_at"] == "2026-11-23T01:00:00Z"

    listed = (await shop.api.get("/v1/segments")).json()["items"]
    assert [s["id"] for s in listed] == [saved["id"]]
    assert (await shop.api.get(f"/v1/segments/{saved['id']}")).json() == saved
    estimate = (await shop.api.get(f"/v1/segments/{saved['id']}/estimate")).json()
    assert estimate["count"] == 2 and estimate["took_ms"] >= 0

    changed = await shop.api.patch(
        f"/v1/segments/{saved['id']}",
        json={
            "name": "장바구니 이탈 (7일 무구매)",
            **{"definition": {**CART, "exclude": [{"type": "last_purchase", "within_days": 7}]}},
        },
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["description"] == "장바구니에 상품이 남은 고객"
    assert (await shop.api.get(f"/v1/segments/{saved['id']}/estimate")).json()["count"] == 1

    assert (await shop.api.delete(f"/v1/segments/{saved['id']}")).status_code == 204
    assert (await shop.api.get(f"/v1/segments/{saved['id']}")).status_code == 404
    assert (await shop.api.get("/v1/segments")).json()["items"] == []


async def test_names_are_unique_in_a_workspace(shops):
    a, b = shops
    await create(a, "VIP 단골", CART)
    again = await a.api.post("/v1/segments", json={"name": "VIP 단골", "definition": CART})
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    await create(b, "VIP 단골", CART)  # another workspace may use the name


async def test_a_segment_can_use_another_segment(shop):
    cart = await create(shop, "장바구니 보유", CART)
    lapsed = await create(shop, "7일 무구매", NO_RECENT_PURCHASE)
    both = await create(shop, "장바구니 이탈 고객", {"include": {"all": [uses(cart), uses(lapsed)]}})
    assert await shop.users({"include": uses(both)}) == {"u-cart"}
    assert await shop.users({"include": uses(cart), "exclude": [uses(both)]}) == {"u-buyer"}
    # a change to a used segment shows through
    response = await shop.api.patch(
        f"/v1/segments/{lapsed['id']}", json={"definition": {"include": {"type": "member"}}}
    )
    assert response.status_code == 200, response.text
    assert await shop.users({"include": uses(both)}) == {"u-cart"}
    assert await shop.users({"include": uses(lapsed)}) == {"u-cart", "u-dormant"}
    # a used segment cannot be deleted
    refused = await shop.api.delete(f"/v1/segments/{cart['id']}")
    assert refused.status_code == 409 and "장바구니 이탈 고객" in refused.json()["detail"]


async def test_cycles_are_refused_with_the_path(shop):
    first = await create(shop, "첫째", CART)
    second = await create(shop, "둘째", {"include": {"all": [{"type": "member"}, uses(first)]}})
    response = await shop.api.patch(
        f"/v1/segments/{first['id']}",
        json={"definition": {"include": {"any": [{"type": "member"}, uses(second)]}}},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.definition.include.any.1.segment_id"
    assert response.json()["errors"][0]["type"] == "segment_cycle"
    itself = await shop.api.patch(
        f"/v1/segments/{first['id']}", json={"definition": {"include": uses(first)}}
    )
    assert itself.status_code == 422


async def test_segments_of_other_workspaces_cannot_be_used_or_seen(shops):
    a, b = shops
    theirs = await create(b, "B의 세그먼트", CART)
    response = await a.api.post(
        "/v1/segments/estimate", json={"include": {"all": [{"type": "member"}, uses(theirs)]}}
    )
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert (error["field"], error["type"]) == ("body.include.all.1.segment_id", "segment_not_found")
    assert (await a.api.get(f"/v1/segments/{theirs['id']}")).status_code == 404
    assert (await a.api.get(f"/v1/segments/{theirs['id']}/estimate")).status_code == 404
    assert (await a.api.patch(f"/v1/segments/{theirs['id']}", json={"name": "x"})).status_code == 404
    assert (await a.api.delete(f"/v1/segments/{theirs['id']}")).status_code == 404
    assert (await a.api.get("/v1/segments")).json()["items"] == []
    assert (await a.api.get(f"/v1/segments/{uuid.uuid4()}")).status_code == 404


@pytest.mark.parametrize(
    ("definition", "field"),
    [
        (
            {
                "include": {
                    "all": [
                        {"type": "member"},
                        {"type": "gender", "value": "female"},
                        {"type": "last_visit", "within_days": -1},
                    ]
                }
            },
            "body.include.all.2.within_days",
        ),
        (
            {"include": {"all": [{"type": "page_viewed", "url": "/promo", "window": {"days": "오늘"}}]}},
            "body.include.all.0.window.days",
        ),
        (
            {"include": {"type": "member"}, "exclude": [{"any": [{"type": "teleport"}]}]},
            "body.exclude.0.any.0.type",
        ),
        ({"include": {"not": {"type": "gender"}}}, "body.include.not.value"),
        ({"include": {"type": "cart_total"}}, "body.include"),
        ({"include": {"type": "trait", "key": "grade", "op": "in", "value": "VIP"}}, "body.include"),
        ({"include": {"type": "member", "colour": "red"}}, "body.include.colour"),
        ({"exclude": []}, "body.include"),
        (
            {
                "include": {
                    "type": "event",
                    "name": "Product Added",
                    "filters": [{"key": "price", "op": "gt", "value": "비쌈"}],
                }
            },
            "body.include.filters.0",
        ),
    ],
)
async def test_invalid_definitions_get_422_with_the_path(shop, definition, field):
    response = await shop.api.post("/v1/segments/estimate", json=definition)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field]


async def test_a_saved_definition_is_checked_at_its_path(shop):
    response = await shop.api.post(
        "/v1/segments",
        json={"name": "잘못된 세그먼트", "definition": {"include": {"any": [{"type": "age"}]}}},
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["body.definition.include.any.0"]


async def test_keys_are_required_and_write_keys_do_not_open_segments(shops):
    a, _b = shops
    anonymous = await a.api.post("/v1/segments/estimate", json=CART, headers={"Authorization": ""})
    assert anonymous.status_code == 401


async def test_openapi_documents_the_operations_and_playbook_examples(shop):
    schema = (await shop.api.get("/openapi.json")).json()
    operations = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert {
        "segments_estimate",
        "segments_preview",
        "segments_create",
        "segments_list",
        "segments_get",
        "segments_update",
        "segments_delete",
        "segments_estimate_saved",
    } <= operations
    estimate = schema["paths"]["/v1/segments/estimate"]["post"]
    examples = estimate["requestBody"]["content"]["application/json"]["examples"]
    assert examples["cart_abandoners"]["summary"] == "장바구니 이탈 고객"
    assert set(examples) == {
        "cart_abandoners",
        "promo_page_today",
        "loyal_big_spenders",
        "dormant_since_march",
    }
    assert "422" in estimate["responses"] and estimate["tags"] == ["segments"]
