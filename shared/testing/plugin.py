"""pytest plugin: every test run gets real, migrated PostgreSQL and real Redis.

At session start it uses DASI_DATABASE_URL / DASI_REDIS_URL when set, and otherwise starts the
embedded servers (or reuses those of a running `dasi up`). It creates a fresh database for the
run, migrates it, and points DASI_* at it before any test module is imported, so code that reads
settings at import (arq WorkerSettings) sees the test servers. The database is dropped at the end.
Redis: the embedded server's database 1 (`dasi up` uses 0); a given DASI_REDIS_URL is used as is
and is flushed between tests, so give the tests a Redis database of their own.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from infra import embedded, migrate, stack
from shared.settings import Settings, get_settings

DEFAULT_TEST_NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 10:00 in Seoul, a Monday


@dataclass
class _TestServers:
    settings: Settings
    servers: stack.Servers
    stop_postgres: bool
    stop_redis: bool
    database_url: str
    redis_url: str
    saved_env: dict[str, str | None]


_state: _TestServers | None = None


def _asyncpg_dsn(url: str, database: str) -> dict[str, object]:
    parsed = make_url(url)
    host = parsed.query.get("host") or parsed.host
    return {
        "host": host,
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
        "database": database,
    }


async def _create_database(url: str, name: str) -> None:
    conn = await asyncpg.connect(**_asyncpg_dsn(url, "postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _drop_database(url: str, name: str) -> None:
    conn = await asyncpg.connect(**_asyncpg_dsn(url, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _redis_test_url(servers: stack.Servers) -> str:
    return f"{servers.redis_url}?db=1" if servers.embedded_redis else servers.redis_url


def pytest_sessionstart(session: pytest.Session) -> None:
    global _state
    base = Settings()
    state_dir = base.state_dir.resolve()
    was_running = embedded.postgres_running(state_dir), embedded.redis_running(state_dir)
    servers = stack.start_servers(base)
    name = f"dasi_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_create_database(servers.database_url, name))
    database_url = make_url(servers.database_url).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(database_url)
    redis_url = _redis_test_url(servers)
    env = {"DASI_DATABASE_URL": database_url, "DASI_REDIS_URL": redis_url, "DASI_ENV": "test"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    get_settings.cache_clear()
    _state = _TestServers(
        settings=get_settings(),
        servers=servers,
        stop_postgres=servers.embedded_postgres and not was_running[0],
        stop_redis=servers.embedded_redis and not was_running[1],
        database_url=database_url,
        redis_url=redis_url,
        saved_env=saved,
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _state
    if _state is None:
        return
    state, _state = _state, None
    asyncio.run(_drop_database(state.servers.database_url, make_url(state.database_url).database or ""))
    for key, value in state.saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_settings.cache_clear()
    state_dir = state.settings.state_dir.resolve()
    if state.stop_redis:
        embedded.stop_redis(state_dir)
    if state.stop_postgres:
        embedded.stop_postgres(state_dir)


def test_servers() -> _TestServers:
    assert _state is not None, "the dasi test plugin did not start the servers"
    return _state


test_servers.__test__ = False  # type: ignore[attr-defined]


# --- fixtures -----------------------------------------------------------------------------------

from shared.testing.fixtures import *  # noqa: E402, F403
