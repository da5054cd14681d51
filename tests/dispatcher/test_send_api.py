"""POST /v1/messages (one-off, transactional, test sends) and GET /v1/messages/{id}: recorded in the
request, sent by the worker through the same pipeline, read back with its delivery history."""

from __future__ import annotations

import uuid

import httpx

from tests.dispatcher.pipeline_support import (
    dispatcher_http,
    eventually,
    make_shop,
    make_shopper,
    no_retry_waits,  # noqa: F401  (autouse fixture)
    run_worker,
    sandbox,  # noqa: F401  (fixture)
    status_is,
)


async def test_test_send_to_a_phone_then_read_its_history(settings, db, redis, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    async with (
        dispatcher_http(settings, clock, sandbox) as url,
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {shop.secret_key}"}) as http,
    ):
        body = {
            "to": "010-9876-5432",
            "channels": ["sms"],
            "content": {"body": "[다시 스토어] 테스트 발송입니다. {{ store.name }}"},
        }
        r = await http.post("/v1/messages", json=body, headers={"Idempotency-Key": "test-send-1"})
        assert r.status_code == 202, r.text
        sent = r.json()
        assert sent["status"] == "queued" and sent["kind"] == "test"
        again = await http.post("/v1/messages", json=body, headers={"Idempotency-Key": "test-send-1"})
        assert again.status_code == 200 and again.json()["id"] == sent["id"]

        await run_worker(settings, clock, sandbox)
        r = await http.get(f"/v1/messages/{sent['id']}")
        await eventually(lambda: status_is(db, uuid.UUID(sent["id"]), "delivered"))
        r = await http.get(f"/v1/messages/{sent['id']}")
        assert r.status_code == 200
        message = r.json()
        assert (message["status"], message["channel"], message["cost_krw"]) == ("delivered", "sms", 15)
        [attempt] = message["attempts"]
        assert (attempt["provider"], attempt["outcome"], attempt["state"]) == ("nhn-sms", "delivered", "done")
    [held] = await sandbox.messages("sms")
    assert (held["recipient"], held["body"]) == (
        "01098765432",
        "[다시 스토어] 테스트 발송입니다. 다시 스토어",
    )
    assert len(await sandbox.submissions("sms")) == 1


async def test_transactional_alimtalk_to_a_profile(settings, db, redis, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    pid = await make_shopper(db, shop, clock.now())
    async with (
        dispatcher_http(settings, clock, sandbox) as url,
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {shop.secret_key}"}) as http,
    ):
        r = await http.post(
            "/v1/messages",
            json={
                "profile_id": str(pid),
                "channels": ["alimtalk", "sms"],
                "templates": {
                    "alimtalk": str(shop.templates["alimtalk"]),
                    "sms": str(shop.templates["sms_info"]),
                },
                "variables": {"product.name": "선크림"},
            },
        )
        assert r.status_code == 202, r.text
        mid = uuid.UUID(r.json()["id"])
        await run_worker(settings, clock, sandbox)
        await eventually(lambda: status_is(db, mid, "delivered"))
        message = (await http.get(f"/v1/messages/{mid}")).json()
        assert (message["channel"], message["cost_krw"], message["kind"]) == ("alimtalk", 9, "transactional")
    [held] = await sandbox.messages("kakao")
    assert held["kind"] == "alimtalk" and held["recipient"] == "01012345678"


async def test_bad_input_names_the_field_and_keys_are_scoped(settings, db, redis, clock, sandbox):  # noqa: F811
    shop = await make_shop(db, clock.now())
    other = await make_shop(db, clock.now(), name="다른 스토어")
    async with dispatcher_http(settings, clock, sandbox) as url, httpx.AsyncClient(base_url=url) as http:
        auth = {"Authorization": f"Bearer {shop.secret_key}"}
        r = await http.post("/v1/messages", json={"to": "01012345678", "channels": ["fax"]}, headers=auth)
        assert r.status_code == 422
        assert r.headers["content-type"].startswith("application/problem+json")
        assert any(e["field"].startswith("body.channels") for e in r.json()["errors"])
        r = await http.post("/v1/messages", json={"to": "01012345678", "channels": ["sms"]}, headers=auth)
        assert r.status_code == 422 and "template" in r.json()["detail"]

        r = await http.post(
            "/v1/messages",
            json={"to": "01012345678", "channels": ["sms"], "content": {"body": "안녕하세요"}},
            headers=auth,
        )
        mid = r.json()["id"]
        assert (await http.get(f"/v1/messages/{mid}", headers=auth)).status_code == 200
        foreign = {"Authorization": f"Bearer {other.secret_key}"}
        assert (await http.get(f"/v1/messages/{mid}", headers=foreign)).status_code == 404
        assert (await http.get(f"/v1/messages/{mid}")).status_code == 401


def test_openapi_has_stable_operation_ids(settings):
    from services.dispatcher.main import create_app

    spec = create_app(settings).openapi()
    ops = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert {"messages_send", "messages_get", "webhooks_receive", "unsubscribe_one_click"} <= ops
