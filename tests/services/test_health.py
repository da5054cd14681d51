"""Each service: /healthz, /readyz (503 with the reason when not ready), OpenAPI and docs."""

from __future__ import annotations

import importlib

import pytest
from sqlalchemy import text

from shared.testing.fixtures import serve

SERVICES = ["ingest", "segmenter", "scheduler", "dispatcher", "attribution"]


def create(service: str, settings):
    return importlib.import_module(f"services.{service}.main").create_app(settings)


@pytest.mark.parametrize("service", SERVICES)
async def test_service_is_alive_ready_and_documented(service, settings, db, redis):
    async with serve(create(service, settings)) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        schema = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "postgres": "ok", "redis": "ok", "migrations": "at head"}
    assert schema["info"]["title"] == f"Dasi {service}"
    operation_ids = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert {"health_live", "health_ready", "workspace_get", "workspace_update"} <= operation_ids
    assert (
        "application/problem+json" in schema["paths"]["/v1/workspace"]["patch"]["responses"]["422"]["content"]
    )
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


async def test_not_ready_when_redis_is_unreachable(settings, db, tmp_path):
    broken = settings.model_copy(update={"redis_url": f"unix://{tmp_path}/no-such.sock"})
    async with serve(create("ingest", broken)) as client:
        response = await client.get("/readyz")
        alive = await client.get("/healthz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "redis: unreachable" in response.json()["detail"]
    assert alive.status_code == 200


async def test_not_ready_when_migrations_are_behind(settings, db, engine):
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE platform.alembic_version SET version_num = 'older'"))
    try:
        async with serve(create("dispatcher", settings)) as client:
            response = await client.get("/readyz")
    finally:
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE platform.alembic_version SET version_num = :head"), {"head": _head()}
            )
    assert response.status_code == 503
    assert "migrations: not at head" in response.json()["detail"]


def _head() -> str:
    from shared.health import migration_heads

    (head,) = migration_heads()
    return head
