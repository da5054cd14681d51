"""The content API: templates checked when saved (422 naming the field), the alimtalk review,
previews in final form, sender profiles, suppressions, and workspace isolation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest_asyncio

from services.dispatcher.main import create_app
from shared.testing.fixtures import serve


@dataclass
class Shop:
    id: Any
    api: httpx.AsyncClient


@pytest_asyncio.fixture
async def shops(settings, clock, db, redis, make_workspace) -> AsyncIterator[tuple[Shop, Shop]]:
    a = await make_workspace("다시 스토어")
    b = await make_workspace("다른 스토어", timezone="America/Los_Angeles")
    async with (
        serve(
            create_app(settings, clock=clock), headers={"Authorization": f"Bearer {a.secret_key}"}
        ) as api_a,
        serve(
            create_app(settings, clock=clock), headers={"Authorization": f"Bearer {b.secret_key}"}
        ) as api_b,
    ):
        yield Shop(a.workspace.id, api_a), Shop(b.workspace.id, api_b)


@pytest_asyncio.fixture
async def shop(shops: tuple[Shop, Shop]) -> Shop:
    return shops[0]


SMS_AD = {
    "name": "장바구니 리마인드",
    "channel": "sms",
    "is_ad": True,
    "body": "{{ profile.name }}님, {{ cart.product_name }} 잊지 마세요 {{ link }}",
}
ALIMTALK = {
    "name": "쿠폰 만료 안내",
    "channel": "alimtalk",
    "is_ad": False,
    "alimtalk_template_code": "COUPON_EXPIRY_01",
    "body": "{{ profile.name }}님, {{ coupon.name }} 쿠폰이 "
    "{{ coupon.expires_at | date_ko: 'full' }}에 만료됩니다.",
    "buttons": [{"type": "WL", "name": "쿠폰함 보기", "linkMo": "{{ link }}"}],
}
SENDER = {
    "name": "기본",
    "store_name": "다시 스토어",
    "sender_numbers": [{"number": "02-1234-5678", "verified": True}],
    "opt_out_number": "080-123-4567",
    "opt_out_verified": True,
    "kakao_sender_key": "kakao-key",
    "kakao_ad_cutoff": "20:00",
}


async def create(shop: Shop, body: dict[str, Any]) -> dict[str, Any]:
    response = await shop.api.post("/v1/templates", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def problem_fields(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return {e["field"]: e["type"] for e in response.json()["errors"]}


async def test_templates_crud(shop):
    saved = await create(shop, SMS_AD)
    assert saved["created_at"] == "2026-11-23T01:00:00Z" and saved["review_state"] is None
    assert (await shop.api.get(f"/v1/templates/{saved['id']}")).json() == saved
    assert [t["id"] for t in (await shop.api.get("/v1/templates")).json()["items"]] == [saved["id"]]
    assert (await shop.api.get("/v1/templates", params={"channel": "email"})).json()["items"] == []

    changed = await shop.api.patch(
        f"/v1/templates/{saved['id']}", json={"variables": {"cart.product_name": "상품"}}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["variables"] == {"cart.product_name": "상품"}
    assert changed.json()["body"] == SMS_AD["body"]

    again = await shop.api.post("/v1/templates", json=SMS_AD)
    assert again.status_code == 409
    other = await create(shop, {**SMS_AD, "name": "두 번째"})
    renamed = await shop.api.patch(f"/v1/templates/{other['id']}", json={"name": SMS_AD["name"]})
    assert renamed.status_code == 409 and renamed.headers["content-type"] == "application/problem+json"
    assert (await shop.api.delete(f"/v1/templates/{saved['id']}")).status_code == 204
    assert (await shop.api.get(f"/v1/templates/{saved['id']}")).status_code == 404


async def test_unknown_variables_are_refused_when_saved(shop):
    response = await shop.api.post(
        "/v1/templates",
        json={
            **SMS_AD,
            "body": "{{ profile.nmae }}님 {{ cart.product_name | shout }}",
            "subject": "{{ coupon.title }}",
            "variables": {"coupon.titel": "쿠폰"},
            "buttons": [{"type": "WL", "name": "보기", "linkMo": "{{ lnk }}"}],
        },
    )
    problem_fields(response)
    assert {(e["field"], e["type"]) for e in response.json()["errors"]} == {
        ("body.body", "unknown_variable"),
        ("body.body", "unknown_filter"),
        ("body.subject", "unknown_variable"),
        ("body.variables.coupon.titel", "unknown_variable"),
        ("body.buttons.0.linkMo", "unknown_variable"),
    }
    messages = [e["message"] for e in response.json()["errors"]]
    assert "unknown variable `profile.nmae` at line 1, column 4" in messages
    assert "unknown filter `shout`" in messages
    # an update is checked the same way
    saved = await create(shop, SMS_AD)
    bad = await shop.api.patch(f"/v1/templates/{saved['id']}", json={"body": "{{ oops }}"})
    assert problem_fields(bad) == {"body.body": "unknown_variable"}
    assert (await shop.api.get(f"/v1/templates/{saved['id']}")).json()["body"] == SMS_AD["body"]


async def test_text_euc_kr_cannot_carry_is_refused_when_saved(shop):
    response = await shop.api.post("/v1/templates", json={**SMS_AD, "body": "주말 특가 🎉 {{ link }}"})
    assert problem_fields(response) == {"body.body": "unencodable_character"}
    assert "U+1F389" in response.json()["errors"][0]["message"]
    # a Kakao message may carry emoji, but its SMS fallback may not
    kakao = {"name": "친구톡", "channel": "friendtalk", "is_ad": True, "body": "특가 🎉"}
    assert (
        await shop.api.post("/v1/templates", json={**kakao, "fallback_body": "특가 안내"})
    ).status_code == 201
    bad_fallback = await shop.api.post("/v1/templates", json={**kakao, "name": "친구톡2"})
    assert problem_fields(bad_fallback) == {"body.body": "unencodable_character"}


async def test_channel_rules_when_saved(shop):
    ad_alimtalk = await shop.api.post("/v1/templates", json={**ALIMTALK, "is_ad": True})
    assert problem_fields(ad_alimtalk) == {"body.is_ad": "alimtalk_ad"}
    no_code = await shop.api.post("/v1/templates", json={**ALIMTALK, "alimtalk_template_code": None})
    assert problem_fields(no_code) == {"body.alimtalk_template_code": "missing"}
    email = {"name": "메일", "channel": "email", "is_ad": True, "body": "본문"}
    assert problem_fields(await shop.api.post("/v1/templates", json=email)) == {"body.subject": "missing"}
    long_subject = await shop.api.post("/v1/templates", json={**SMS_AD, "subject": "가" * 21})
    assert problem_fields(long_subject) == {"body.subject": "too_long"}
    assert (await shop.api.post("/v1/templates", json={**SMS_AD, "subject": "가" * 20})).status_code == 201
    bad_channel = await shop.api.post("/v1/templates", json={**SMS_AD, "channel": "fax"})
    assert "body.channel" in problem_fields(bad_channel)


async def test_alimtalk_review_states(shop):
    saved = await create(shop, ALIMTALK)
    assert saved["review_state"] == "registered"
    url = f"/v1/templates/{saved['id']}/review"

    assert (await shop.api.post(url, json={"action": "approve"})).status_code == 409  # not under review
    submitted = await shop.api.post(url, json={"action": "submit"})
    assert submitted.json()["review_state"] == "under_review"
    no_reason = await shop.api.post(url, json={"action": "reject"})
    assert problem_fields(no_reason) == {"body.reason": "missing"}
    rejected = (await shop.api.post(url, json={"action": "reject", "reason": "변수 과다"})).json()
    assert rejected["review_state"] == "rejected" and rejected["review_reason"] == "변수 과다"
    await shop.api.post(url, json={"action": "submit"})
    approved = (await shop.api.post(url, json={"action": "approve"})).json()
    assert approved["review_state"] == "approved" and approved["review_reason"] is None
    assert [h["state"] for h in approved["review_history"]] == [
        "registered",
        "under_review",
        "rejected",
        "under_review",
        "approved",
    ]
    # changing the approved text sends it back for review
    edited = await shop.api.patch(f"/v1/templates/{saved['id']}", json={"body": "{{ profile.name }}님 안내"})
    assert edited.json()["review_state"] == "registered"
    # only alimtalk is reviewed
    sms = await create(shop, SMS_AD)
    assert (
        await shop.api.post(f"/v1/templates/{sms['id']}/review", json={"action": "submit"})
    ).status_code == 409


async def test_preview_in_final_form(shop):
    saved = await create(shop, SMS_AD)
    url = f"/v1/templates/{saved['id']}/preview"
    placeholder = (await shop.api.post(url, json={})).json()
    assert placeholder["warnings"] and placeholder["body"].startswith("(광고)")

    assert (await shop.api.post("/v1/sender-profiles", json=SENDER)).status_code == 201
    sample = (await shop.api.post(url, json={})).json()
    assert sample["body"] == (
        "(광고)다시 스토어\n"
        "김다시님, 수분크림 잊지 마세요 https://go.dasi.shop/c/AbC123\n"
        "무료수신거부 080-123-4567"
    )
    assert sample["channel"] == "lms" and sample["body_bytes"] > 90 and sample["warnings"] == []

    given = (
        await shop.api.post(url, json={"variables": {"cart.product_name": "팩", "link": "http://a.kr"}})
    ).json()
    assert given["body"] == "(광고)다시 스토어\n고객님, 팩 잊지 마세요 http://a.kr\n무료수신거부 080-123-4567"
    assert given["channel"] == "sms" and given["body_bytes"] <= 90

    missing = await shop.api.post(url, json={"variables": {"link": "http://a.kr"}})
    assert problem_fields(missing) == {"body.variables.cart.product_name": "missing_variable"}
    emoji = await shop.api.post(url, json={"variables": {"cart.product_name": "팩😀", "link": "x"}})
    assert problem_fields(emoji) == {"body": "unencodable_character"}


async def test_preview_of_an_alimtalk_template_shows_its_fallback(shop):
    await shop.api.post("/v1/sender-profiles", json=SENDER)
    saved = await create(shop, ALIMTALK)
    preview = (await shop.api.post(f"/v1/templates/{saved['id']}/preview", json={})).json()
    assert preview["channel"] == "alimtalk" and not preview["is_ad"]
    assert preview["body"] == "김다시님, 신규 10% 할인 쿠폰이 2026년 11월 25일(수) 23:59에 만료됩니다."
    assert preview["buttons"] == [
        {"type": "WL", "name": "쿠폰함 보기", "linkMo": "https://go.dasi.shop/c/AbC123"}
    ]
    fallback = preview["fallback"]
    assert fallback["body"] == preview["body"] and fallback["body_bytes"] == 71  # informational: no ad form
    assert fallback["channel"] == "sms"
    assert preview["template_parameters"]["coupon.name"] == "신규 10% 할인"
    assert any("registered" in w for w in preview["warnings"])


async def test_sender_profiles(shop):
    created = await shop.api.post("/v1/sender-profiles", json=SENDER)
    assert created.status_code == 201, created.text
    first = created.json()
    assert first["is_default"] and first["opt_out_number"] == "0801234567"
    assert first["sender_numbers"] == [{"number": "0212345678", "verified": True}]
    assert first["kakao_ad_cutoff"] == "20:00:00"
    second = (
        await shop.api.post("/v1/sender-profiles", json={"name": "브랜드", "store_name": "다시 랩"})
    ).json()
    assert not second["is_default"] and second["kakao_ad_cutoff"] == "20:50:00"
    assert (await shop.api.post("/v1/sender-profiles", json=SENDER)).status_code == 409

    moved = await shop.api.patch(f"/v1/sender-profiles/{second['id']}", json={"is_default": True})
    assert moved.json()["is_default"]
    assert not (await shop.api.get(f"/v1/sender-profiles/{first['id']}")).json()["is_default"]

    late = await shop.api.patch(f"/v1/sender-profiles/{first['id']}", json={"kakao_ad_cutoff": "21:30"})
    assert "body.kakao_ad_cutoff" in problem_fields(late)
    bad_080 = await shop.api.post(
        "/v1/sender-profiles", json={**SENDER, "name": "x", "opt_out_number": "02-1"}
    )
    assert "body.opt_out_number" in problem_fields(bad_080)

    assert len((await shop.api.get("/v1/sender-profiles")).json()["items"]) == 2
    assert (await shop.api.delete(f"/v1/sender-profiles/{second['id']}")).status_code == 204
    assert (await shop.api.get(f"/v1/sender-profiles/{second['id']}")).status_code == 404


async def test_suppressions_api(shop):
    added = await shop.api.post(
        "/v1/suppressions", json={"channel": "sms", "address": "010-1234-5678", "reason": "고객 요청"}
    )
    assert added.status_code == 201, added.text
    entry = added.json()
    assert entry["address"] == "01012345678" and entry["source"] == "manual"
    again = await shop.api.post("/v1/suppressions", json={"channel": "sms", "address": "+82 10 1234 5678"})
    assert again.status_code == 200 and again.json()["id"] == entry["id"]
    await shop.api.post("/v1/suppressions", json={"channel": "email", "address": "Kim@Example.com"})

    listed = (await shop.api.get("/v1/suppressions")).json()
    assert {s["address"] for s in listed["items"]} == {"01012345678", "kim@example.com"}
    found = (
        await shop.api.get("/v1/suppressions", params={"channel": "sms", "address": "010-1234-5678"})
    ).json()
    assert [s["id"] for s in found["items"]] == [entry["id"]]
    bad = await shop.api.post("/v1/suppressions", json={"channel": "fax", "address": "1"})
    assert "body.channel" in problem_fields(bad)

    assert (await shop.api.delete(f"/v1/suppressions/{entry['id']}")).status_code == 204
    assert (await shop.api.delete(f"/v1/suppressions/{entry['id']}")).status_code == 404


async def test_workspace_isolation(shops):
    a, b = shops
    template = await create(a, ALIMTALK)
    sender = (await a.api.post("/v1/sender-profiles", json=SENDER)).json()
    suppression = (
        await a.api.post("/v1/suppressions", json={"channel": "sms", "address": "01012345678"})
    ).json()

    for path in (f"/v1/templates/{template['id']}", f"/v1/sender-profiles/{sender['id']}"):
        assert (await b.api.get(path)).status_code == 404
        assert (await b.api.patch(path, json={"name": "탈취"})).status_code == 404
        assert (await b.api.delete(path)).status_code == 404
    for action in ("submit", "approve"):
        review = await b.api.post(f"/v1/templates/{template['id']}/review", json={"action": action})
        assert review.status_code == 404
    assert (await b.api.post(f"/v1/templates/{template['id']}/preview", json={})).status_code == 404
    assert (await b.api.delete(f"/v1/suppressions/{suppression['id']}")).status_code == 404
    for path in ("/v1/templates", "/v1/sender-profiles", "/v1/suppressions"):
        assert (await b.api.get(path)).json()["items"] == []

    # A's things are untouched, and B may use the same names and addresses
    assert (await a.api.get(f"/v1/templates/{template['id']}")).json()["review_state"] == "registered"
    assert (await a.api.get("/v1/suppressions")).json()["items"][0]["id"] == suppression["id"]
    assert (await b.api.post("/v1/templates", json=ALIMTALK)).status_code == 201
    assert (
        await b.api.post("/v1/suppressions", json={"channel": "sms", "address": "01012345678"})
    ).status_code == 201


async def test_a_secret_key_is_required(shop):
    response = await shop.api.get("/v1/templates", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


async def test_openapi_has_stable_operation_ids(shop):
    schema = (await shop.api.get("/openapi.json")).json()
    ids = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert {
        "templates_create",
        "templates_list",
        "templates_get",
        "templates_update",
        "templates_delete",
        "templates_review",
        "templates_preview",
        "sender_profiles_create",
        "sender_profiles_list",
        "sender_profiles_get",
        "sender_profiles_update",
        "sender_profiles_delete",
        "suppressions_list",
        "suppressions_add",
        "suppressions_remove",
    } <= ids
