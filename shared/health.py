"""`/healthz` (the process is alive) and `/readyz` (Postgres and Redis reachable, migrations at head)."""

from __future__ import annotations

import asyncio
from functools import lru_cache

from alembic.script import ScriptDirectory
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from shared.db import PLATFORM_SCHEMA
from shared.dependencies import ResourcesDep
from shared.errors import problem_response, problem_responses
from shared.settings import PROJECT_ROOT

MIGRATIONS_DIR = PROJECT_ROOT / "infra" / "migrations"
CHECK_TIMEOUT_S = 2.0

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    status: str
    postgres: str
    redis: str
    migrations: str


@lru_cache
def migration_heads() -> frozenset[str]:
    return frozenset(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads())


@router.get("/healthz", operation_id="health_live", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    return Health()


async def _check_postgres(resources: ResourcesDep) -> tuple[str, str]:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S), resources.engine.connect() as conn:
            rows = await conn.execute(text(f"SELECT version_num FROM {PLATFORM_SCHEMA}.alembic_version"))  # noqa: S608
            applied = frozenset(row[0] for row in rows)
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}: {exc}"[:300], "unknown"
    expected = migration_heads()
    if applied != expected:
        return (
            "ok",
            f"not at head: applied {sorted(applied)}, expected {sorted(expected)}; run `dasi migrate`",
        )
    return "ok", "at head"


async def _check_redis(resources: ResourcesDep) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await resources.redis.ping()
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}: {exc}"[:300]
    return "ok"


@router.get(
    "/readyz",
    operation_id="health_ready",
    response_model=Readiness,
    summary="Postgres and Redis reachable, migrations at head",
    responses=problem_responses(503),
)
async def readyz(resources: ResourcesDep) -> Readiness | JSONResponse:
    (postgres, migrations), redis = await asyncio.gather(_check_postgres(resources), _check_redis(resources))
    if postgres == "ok" and redis == "ok" and migrations == "at head":
        return Readiness(status="ready", postgres=postgres, redis=redis, migrations=migrations)
    reasons = [
        f"{name}: {state}"
        for name, state, good in (
            ("postgres", postgres, "ok"),
            ("redis", redis, "ok"),
            ("migrations", migrations, "at head"),
        )
        if state != good
    ]
    return problem_response(503, "not-ready", "Not ready", "; ".join(reasons), instance="/readyz")
