"""Cohorts: a JSON list of user ids or a member CSV (UTF-8 or CP949; user id, phone or email per
row) becomes a static list usable in definitions; rows naming nobody are reported and the good rows
kept; another workspace's cohorts are never seen or used."""

from __future__ import annotations

import uuid

import pytest

from tests.segmenter.conftest import at, identify, send


async def make(shop, name, user_ids):
    response = await shop.api.post("/v1/cohorts", json={"name": name, "user_ids": user_ids})
    assert response.status_code == 201, response.text
    return response.json()


def cohort(found):
    return {"type": "cohort", "cohort_id": found["cohort"]["id"]}


def upload(shop, name, content: bytes, **fields):
    files = {"file": ("members.csv", content, "text/csv")}
    return shop.api.post("/v1/cohorts/import", data={"name": name, **fields}, files=files)


async def test_a_list_of_user_ids_becomes_a_cohort(shop):
    made = await make(shop, "VIP 초대", ["u-cart", "u-promo", "nobody", "u-cart"])
    assert made["cohort"]["member_count"] == 2 and made["cohort"]["source"] == "json"
    assert (made["rows"], made["matched"], made["skipped"]) == (4, 3, 1)
    assert made["errors"] == [
        {"row": 2, "column": "user_ids", "message": "no profile with this user_id in the workspace"}
    ]
    assert await shop.users_of(cohort(made)) == {"u-cart", "u-promo"}
    # composes like any condition
    assert await shop.users({"include": cohort(made), "exclude": [{"type": "member"}]}) == {"u-promo"}

    listed = (await shop.api.get("/v1/cohorts")).json()["items"]
    assert [c["name"] for c in listed] == ["VIP 초대"]
    assert (await shop.api.get(f"/v1/cohorts/{made['cohort']['id']}")).json() == made["cohort"]
    assert (await shop.api.delete(f"/v1/cohorts/{made['cohort']['id']}")).status_code == 204
    assert (await shop.api.get("/v1/cohorts")).json()["items"] == []


async def test_a_cp949_member_csv_matches_user_ids_phones_and_emails(settings, clock, shop):
    await send(
        settings,
        clock,
        shop,
        [
            identify("u-dormant", at(11, 22, 9), phone="010-1234-5678"),
            identify("u-buyer", at(11, 22, 9), email="Danggol@Example.com"),
        ],
        "contact",
    )
    csv_text = (
        "회원ID,이름,휴대폰,이메일\r\n"
        "u-cart,김다시,,\r\n"
        ",정휴면,+82 10-1234-5678,\r\n"
        ",이단골,,danggol@example.com\r\n"
        ",없는분,010-9999-0000,\r\n"
        ",잘못,12-34,\r\n"
        ",빈칸,,\r\n"
        "\r\n"
    )
    response = await upload(shop, "오프라인 행사 참석자", csv_text.encode("cp949"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["cohort"]["member_count"] == 3 and body["cohort"]["source"] == "csv"
    assert (body["rows"], body["matched"], body["skipped"]) == (6, 3, 3)
    assert [(e["row"], e["column"]) for e in body["errors"]] == [(5, "휴대폰"), (6, "휴대폰"), (7, None)]
    assert "no profile with this phone" in body["errors"][0]["message"]
    assert "not a phone number" in body["errors"][1]["message"]
    assert await shop.users_of(cohort(body)) == {"u-cart", "u-dormant", "u-buyer"}

    utf8 = await upload(shop, "UTF-8 명단", "\ufeffuser_id\nu-promo\n".encode())
    assert utf8.status_code == 201 and utf8.json()["cohort"]["member_count"] == 1


async def test_cohorts_of_other_workspaces_are_never_seen_or_used(shops):
    a, b = shops
    theirs = await make(b, "B 명단", ["u-cart"])
    their_id = theirs["cohort"]["id"]
    assert (await a.api.get(f"/v1/cohorts/{their_id}")).status_code == 404
    assert (await a.api.delete(f"/v1/cohorts/{their_id}")).status_code == 404
    assert (await a.api.get("/v1/cohorts")).json()["items"] == []
    used = await a.api.post(
        "/v1/segments/estimate", json={"include": {"all": [{"type": "member"}, cohort(theirs)]}}
    )
    assert used.status_code == 422
    error = used.json()["errors"][0]
    assert (error["field"], error["type"]) == ("body.include.all.1.cohort_id", "cohort_not_found")
    saved = await a.api.post("/v1/segments", json={"name": "x", "definition": {"include": cohort(theirs)}})
    assert saved.status_code == 422
    assert saved.json()["errors"][0]["field"] == "body.definition.include.cohort_id"
    # B's list holds B's u-cart only, not A's profile of the same user id
    assert await b.users_of(cohort(theirs)) == {"u-cart"}
    assert (await a.api.get(f"/v1/cohorts/{uuid.uuid4()}")).status_code == 404


async def test_a_cohort_in_use_cannot_be_deleted_and_names_are_unique(shop):
    made = await make(shop, "명단", ["u-cart"])
    again = await shop.api.post("/v1/cohorts", json={"name": "명단", "user_ids": ["u-promo"]})
    assert again.status_code == 409
    segment = await shop.api.post(
        "/v1/segments", json={"name": "명단 고객", "definition": {"include": cohort(made)}}
    )
    assert segment.status_code == 201, segment.text
    refused = await shop.api.delete(f"/v1/cohorts/{made['cohort']['id']}")
    assert refused.status_code == 409 and "명단 고객" in refused.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "user_ids": []}, "body.user_ids"),
        ({"name": "", "user_ids": ["u-cart"]}, "body.name"),
        ({"name": "x", "user_ids": ["u-cart", ""]}, "body.user_ids.1"),
        ({"name": "x"}, "body.user_ids"),
    ],
)
async def test_invalid_lists_are_422_naming_the_field(shop, body, field):
    response = await shop.api.post("/v1/cohorts", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == field


async def test_invalid_uploads_are_422_naming_the_field(shop):
    no_name = await shop.api.post(
        "/v1/cohorts/import", files={"file": ("m.csv", b"user_id\nu-cart\n", "text/csv")}
    )
    assert no_name.status_code == 422 and no_name.json()["errors"][0]["field"] == "body.name"
    no_column = await upload(shop, "x", "이름\n김다시\n".encode())
    assert no_column.status_code == 422 and no_column.json()["errors"][0]["field"] == "body.file"
    not_text = await upload(shop, "x", b"\xff\xfe\xfa\x00user_id", encoding="utf-8")
    assert not_text.status_code == 422 and not_text.json()["errors"][0]["field"] == "body.file"
    bad_encoding = await upload(shop, "x", b"user_id\nu-cart\n", encoding="latin-9")
    assert bad_encoding.status_code == 422 and bad_encoding.json()["errors"][0]["field"] == "body.encoding"
    not_multipart = await shop.api.post(
        "/v1/cohorts/import", content=b"user_id\n", headers={"content-type": "text/csv"}
    )
    assert not_multipart.status_code == 415
