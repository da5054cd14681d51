"""Every error is RFC 9457 problem+json; invalid input names its field; a 2xx means committed."""

from __future__ import annotations

import pytest
from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import text

from services.ingest.main import create_app
from shared.app import create_service_app
from shared.dependencies import SessionDep
from shared.errors import Conflict
from shared.testing.fixtures import serve

router = APIRouter()


class Item(BaseModel):
    name: str = Field(min_length=1)
    quantity: int = Field(ge=1)


class Order(BaseModel):
    items: list[Item]


@router.post("/orders")
async def create_order(order: Order) -> dict[str, int]:
    return {"items": len(order.items)}


@router.get("/conflict")
async def conflict() -> None:
    raise Conflict("order 42 already exists")


@router.get("/boom")
async def boom() -> None:
    raise RuntimeError("secret internals: password=hunter2")


@router.post("/commit-fails")
async def commit_fails(session: SessionDep) -> dict[str, str]:
    # violates a deferred constraint: only the commit (after this returns) can fail
    await session.execute(
        text("CREATE TEMP TABLE t (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED) ON COMMIT DROP")
    )
    await session.execute(text("INSERT INTO t VALUES (1), (1)"))
    return {"status": "saved"}


@pytest.fixture
def app(settings):
    return create_service_app("test", description="errors under test", routers=[router], settings=settings)


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("https://") and body["title"]
    return body


async def test_validation_error_names_each_wrong_field(app, db):
    async with serve(app) as client:
        response = await client.post(
            "/orders", json={"items": [{"name": "수분크림", "quantity": 1}, {"name": "", "quantity": 0}]}
        )
    body = assert_problem(response, 422)
    fields = {e["field"] for e in body["errors"]}
    assert fields == {"body.items.1.name", "body.items.1.quantity"}


async def test_malformed_json_is_a_422_problem_not_a_500(app, db):
    async with serve(app) as client:
        response = await client.post(
            "/orders", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert_problem(response, 422)


async def test_unknown_route_and_wrong_method_are_problems(app, db):
    async with serve(app) as client:
        assert_problem(await client.get("/nowhere"), 404)
        assert_problem(await client.get("/orders"), 405)


async def test_domain_error_carries_its_status_and_detail(app, db):
    async with serve(app) as client:
        body = assert_problem(await client.get("/conflict"), 409)
    assert body["detail"] == "order 42 already exists"


async def test_unexpected_error_is_a_500_problem_without_internals(app, db):
    async with serve(app) as client:
        response = await client.get("/boom")
    body = assert_problem(response, 500)
    assert "hunter2" not in response.text and "RuntimeError" not in response.text
    assert body["title"] == "Internal error"


async def test_a_failed_commit_is_never_answered_with_2xx(app, db):
    async with serve(app) as client:
        response = await client.post("/commit-fails")
    assert_problem(response, 500)


async def test_request_id_is_echoed_or_made(settings, db):
    async with serve(create_app(settings)) as client:
        given = await client.get("/healthz", headers={"X-Request-ID": "req-123"})
        made = await client.get("/healthz")
    assert given.headers["x-request-id"] == "req-123"
    assert len(made.headers["x-request-id"]) == 32
