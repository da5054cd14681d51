"""Keys: a secret key opens management APIs of its own workspace only; a write key opens ingestion
only (HTTP Basic username, Segment convention); keys are stored hashed."""

from __future__ import annotations

import asyncio
import base64

import pytest
from fastapi import APIRouter
from sqlalchemy import select, text

from services.scheduler.main import create_app
from shared import auth
from shared.app import create_service_app
from shared.auth import WriteKeyCache, WriteKeyWorkspace
from shared.db import session_scope
from shared.testing.fixtures import serve
from shared.workspaces import ApiKey, KeyKind, find_workspace_by_key, revoke_keys

ingest_like = APIRouter()


@ingest_like.post("/v1/track")
async def track(workspace: WriteKeyWorkspace) -> dict[str, str]:
    return {"workspace_id": str(workspace.id)}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def basic(username: str, password: str = "") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


@pytest.fixture
def app(settings):
    return create_app(settings)


async def test_secret_key_reads_its_own_workspace(app, make_workspace):
    shop = await make_workspace("다시 스토어")
    async with serve(app) as client:
        response = await client.get("/v1/workspace", headers=bearer(shop.secret_key))
    assert response.status_code == 200
    assert response.json() == {
        "id": str(shop.workspace.id),
        "name": "다시 스토어",
        "timezone": "Asia/Seoul",
        "currency": "KRW",
    }


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("dasi_sk_not-a-real-key"),
        {"Authorization": "Bearer"},
        {"Authorization": "Token abc"},
    ],
)
async def test_missing_or_wrong_key_is_refused(app, make_workspace, headers):
    await make_workspace()
    async with serve(app) as client:
        response = await client.get("/v1/workspace", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_write_key_does_not_open_management_routes(app, make_workspace):
    shop = await make_workspace()
    async with serve(app) as client:
        response = await client.get("/v1/workspace", headers=bearer(shop.write_key))
        patched = await client.patch(
            "/v1/workspace", headers=bearer(shop.write_key), json={"name": "hijacked"}
        )
    assert response.status_code == 401 and patched.status_code == 401


async def test_a_key_only_ever_reaches_its_own_workspace(app, make_workspace, db):
    shop_a = await make_workspace("A 스토어")
    shop_b = await make_workspace("B 스토어", timezone="Asia/Tokyo")
    async with serve(app) as client:
        seen_by_a = await client.get("/v1/workspace", headers=bearer(shop_a.secret_key))
        changed = await client.patch(
            "/v1/workspace",
            headers=bearer(shop_a.secret_key),
            json={"name": "A 스토어 (리뉴얼)", "timezone": "Asia/Seoul"},
        )
        seen_by_b = await client.get("/v1/workspace", headers=bearer(shop_b.secret_key))
    assert seen_by_a.json()["id"] == str(shop_a.workspace.id)
    assert changed.json()["name"] == "A 스토어 (리뉴얼)"
    assert seen_by_b.json() == {
        "id": str(shop_b.workspace.id),
        "name": "B 스토어",
        "timezone": "Asia/Tokyo",
        "currency": "KRW",
    }


async def test_invalid_timezone_is_a_422_naming_the_field(app, make_workspace):
    shop = await make_workspace()
    async with serve(app) as client:
        response = await client.patch(
            "/v1/workspace", headers=bearer(shop.secret_key), json={"timezone": "Mars/Base"}
        )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["body.timezone"]


async def test_write_key_opens_ingestion_as_basic_username(settings, make_workspace):
    shop_a = await make_workspace("A")
    shop_b = await make_workspace("B")
    app = create_service_app("test", description="", routers=[ingest_like], settings=settings)
    async with serve(app) as client:
        as_a = await client.post("/v1/track", headers=basic(shop_a.write_key))
        as_b = await client.post("/v1/track", headers=basic(shop_b.write_key))
        secret = await client.post("/v1/track", headers=basic(shop_a.secret_key))
        bearer_write = await client.post("/v1/track", headers=bearer(shop_a.write_key))
        wrong = await client.post("/v1/track", headers=basic("dasi_wk_nope"))
        garbage = await client.post("/v1/track", headers={"Authorization": "Basic !!!"})
    assert as_a.json() == {"workspace_id": str(shop_a.workspace.id)}
    assert as_b.json() == {"workspace_id": str(shop_b.workspace.id)}
    for refused in (secret, bearer_write, wrong, garbage):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic")


async def test_keys_are_stored_hashed_and_revocable(app, make_workspace, db):
    shop = await make_workspace()
    async with session_scope(db) as session:
        stored = (await session.execute(select(ApiKey.key_hash, ApiKey.display_prefix))).all()
        dump = (
            await session.execute(text("SELECT string_agg(t::text, '|') FROM platform.api_keys t"))
        ).scalar()
    assert len(stored) == 2
    assert shop.secret_key not in dump and shop.write_key not in dump
    async with session_scope(db) as session:
        await revoke_keys(session, shop.workspace.id, KeyKind.secret)
    async with serve(app) as client:
        response = await client.get("/v1/workspace", headers=bearer(shop.secret_key))
    assert response.status_code == 401


async def test_a_revoked_write_key_stops_working_within_the_cache_ttl(settings, make_workspace, db):
    """Each app remembers a checked write key for WRITE_KEY_TTL (10 s); here a 0.3 s cache."""
    shop = await make_workspace()
    app = create_service_app("test", description="", routers=[ingest_like], settings=settings)
    app.state.write_key_cache = WriteKeyCache(ttl=0.3)
    async with serve(app) as client:
        before = await client.post("/v1/track", headers=basic(shop.write_key))
        async with session_scope(db) as session:
            await revoke_keys(session, shop.workspace.id, KeyKind.write)
        cached = await client.post("/v1/track", headers=basic(shop.write_key))
        await asyncio.sleep(0.35)
        after = await client.post("/v1/track", headers=basic(shop.write_key))
    assert before.status_code == 200 and cached.status_code == 200  # within the TTL: still trusted
    assert after.status_code == 401


async def test_requests_that_miss_the_write_key_cache_together_share_one_lookup(
    settings, make_workspace, monkeypatch
):
    """When a busy store's entry expires, the requests in flight look its key up once, not each."""
    shop = await make_workspace()
    app = create_service_app("test", description="", routers=[ingest_like], settings=settings)
    looked_up: list[str] = []

    async def counted(session, raw_key, kind):
        looked_up.append(raw_key)
        await asyncio.sleep(0.05)  # a lookup long enough for every request to arrive meanwhile
        return await find_workspace_by_key(session, raw_key, kind)

    monkeypatch.setattr(auth, "find_workspace_by_key", counted)
    async with serve(app) as client:
        answers = await asyncio.gather(
            *(client.post("/v1/track", headers=basic(shop.write_key)) for _ in range(16)),
            *(client.post("/v1/track", headers=basic("not-a-key")) for _ in range(4)),
        )
        again = await client.post("/v1/track", headers=basic(shop.write_key))  # remembered
    assert [a.status_code for a in answers] == [200] * 16 + [401] * 4
    assert again.status_code == 200
    assert sorted(looked_up) == sorted([shop.write_key, "not-a-key"])  # once each
