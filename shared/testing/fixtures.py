"""Fixtures for service tests: settings, a clean database and Redis per test, a frozen clock,
app clients that run the real lifespan, workspaces with keys, and an arq worker in burst mode."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import pytest_asyncio
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker, create_worker
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.clock import FrozenClock
from shared.db import ALL_SCHEMAS, create_engine, create_sessionmaker, session_scope
from shared.redis import create_redis
from shared.settings import Settings, get_settings
from shared.workspaces import NewWorkspace, create_workspace


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest_asyncio.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


async def _truncate_all(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        rows = await conn.execute(
            text(
                "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY(:schemas) "
                "AND tablename <> 'alembic_version'"
            ),
            {"schemas": list(ALL_SCHEMAS)},
        )
        tables = [f'"{schema}"."{table}"' for schema, table in rows]
        if tables:
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


@pytest_asyncio.fixture
async def db(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The sessionmaker of the migrated test database; every table is emptied after the test."""
    yield sessionmaker
    await _truncate_all(engine)


@pytest_asyncio.fixture
async def redis(settings: Settings) -> AsyncIterator[ArqRedis]:
    client = create_redis(settings)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


@pytest.fixture
def clock() -> FrozenClock:
    from shared.testing.plugin import DEFAULT_TEST_NOW

    return FrozenClock(DEFAULT_TEST_NOW)


@asynccontextmanager
async def serve(app: FastAPI, **client_kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for `app` with its real lifespan running (engine, Redis, clock)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", **client_kwargs
        ) as client:
            yield client


WorkspaceFactory = Callable[..., Awaitable[NewWorkspace]]


@pytest.fixture
def make_workspace(db: async_sessionmaker[AsyncSession]) -> WorkspaceFactory:
    async def make(name: str = "다시 스토어", **kwargs: Any) -> NewWorkspace:
        async with session_scope(db) as session:
            return await create_workspace(session, name, **kwargs)

    return make


async def run_worker_burst(worker_settings: type, settings: Settings, **overrides: Any) -> Worker:
    """Run an arq worker until its queue is empty (burst mode), as production runs it."""
    worker = create_worker(
        worker_settings,
        redis_settings=RedisSettings.from_dsn(settings.require_redis_url()),
        burst=True,
        handle_signals=False,
        poll_delay=0.01,
        **overrides,
    )
    try:
        await worker.main()
    finally:
        await worker.close()
    return worker


__all__ = [
    "clock",
    "db",
    "engine",
    "make_workspace",
    "redis",
    "run_worker_burst",
    "serve",
    "sessionmaker",
    "settings",
]
