"""pytest plugin: every test run gets real, migrated PostgreSQL and real Redis.

At session start it uses DASI_DATABASE_URL / DASI_REDIS_URL when set, and otherwise starts the
embedded servers (or reuses those of a running `dasi up`). It creates a fresh database for the
run, migrates it, and points DASI_* at it before any test module is imported, so code that reads
settings at import (arq WorkerSettings) sees the test servers. The database is dropped at the end.
Redis: a database of the embedded server of its own (`dasi up` uses 0; each concurrent test run
takes the next free one); a given DASI_REDIS_URL is used as is and is flushed between tests, so
give the tests a Redis database of their own.

Several test runs may share one state folder at once (two terminals, parallel agents): they
register under `.dasi/test-runs/`, and the last one out stops the embedded servers if a test run
started them, never while another run still uses them, and never those of a running `dasi up`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import psutil
import pytest
from sqlalchemy.engine import make_url

from infra import embedded, migrate, stack
from shared.settings import Settings, get_settings

DEFAULT_TEST_NOW = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 10:00 in Seoul, a Monday


@dataclass
class _TestServers:
    settings: Settings
    servers: stack.Servers
    slot: int
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


MAX_TEST_RUNS = 15  # Redis databases 1..15


@contextlib.contextmanager
def _runs_lock(state_dir: Path) -> Iterator[Path]:
    runs = state_dir / "test-runs"
    runs.mkdir(parents=True, exist_ok=True)
    with (runs / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield runs


def _live_slots(runs: Path) -> dict[int, int]:
    live = {}
    for slot in runs.glob("slot-*"):
        pid = int(slot.read_text() or 0)
        if pid and psutil.pid_exists(pid):
            live[int(slot.name.removeprefix("slot-"))] = pid
        else:
            slot.unlink()
    return live


def _join(state_dir: Path) -> int:
    """Register this run; returns its slot (its Redis database number)."""
    with _runs_lock(state_dir) as runs:
        taken = _live_slots(runs)
        if not taken and not (embedded.postgres_running(state_dir) or embedded.redis_running(state_dir)):
            (runs / "started-by-tests").touch()
        slot = next(n for n in range(1, MAX_TEST_RUNS + 1) if n not in taken)
        (runs / f"slot-{slot}").write_text(str(os.getpid()))
        return slot


def _leave(state_dir: Path, slot: int) -> bool:
    """Unregister; True if this was the last run out and a test run started the servers."""
    with _runs_lock(state_dir) as runs:
        (runs / f"slot-{slot}").unlink(missing_ok=True)
        marker = runs / "started-by-tests"
        if _live_slots(runs) or not marker.exists():
            return False
        marker.unlink()
        return True


def pytest_sessionstart(session: pytest.Session) -> None:
    global _state
    base = Settings()
    state_dir = base.state_dir.resolve()
    slot = _join(state_dir)
    servers = stack.start_servers(base)
    name = f"dasi_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_create_database(servers.database_url, name))
    database_url = make_url(servers.database_url).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(database_url)
    redis_url = f"{servers.redis_url}?db={slot}" if servers.embedded_redis else servers.redis_url
    env = {"DASI_DATABASE_URL": database_url, "DASI_REDIS_URL": redis_url, "DASI_ENV": "test"}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    get_settings.cache_clear()
    _state = _TestServers(
        settings=get_settings(),
        servers=servers,
        slot=slot,
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
    if _leave(state_dir, state.slot):
        stack.stop_servers(state.settings, state.servers)


def test_servers() -> _TestServers:
    assert _state is not None, "the dasi test plugin did not start the servers"
    return _state


test_servers.__test__ = False  # type: ignore[attr-defined]


# --- fixtures -----------------------------------------------------------------------------------

from shared.testing.fixtures import *  # noqa: E402, F403
from shared.testing.sandbox import *  # noqa: E402, F403 - sandbox, sandbox_server, webhook_receiver
