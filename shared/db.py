"""Database plumbing shared by every service: one declarative base, engines and session scopes.

Commit or roll back happens in two places only: `request_session` (the HTTP request's dependency)
and `session_scope` (a job's or a script's unit of work). Services and repositories only flush().
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import structlog
from sqlalchemy import MetaData, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from shared.settings import Settings

log = structlog.get_logger(__name__)

# One Postgres schema per service, plus the platform schema (workspaces, keys) that shared/ manages
PLATFORM_SCHEMA = "platform"
SERVICE_SCHEMAS = ("ingest", "segmenter", "scheduler", "dispatcher", "attribution")
ALL_SCHEMAS = (PLATFORM_SCHEMA, *SERVICE_SCHEMAS)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def async_database_url(url: str) -> str:
    """Accept plain postgres:// URLs too; the services always talk asyncpg."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


# A connection back from the pool after this long idle is pinged before use (a Postgres restart or an
# idle timeout may have closed it). SQLAlchemy's pool_pre_ping pings on every checkout, and its asyncpg
# ping is three round trips (BEGIN; ; ROLLBACK): a third of a busy worker's statements. A connection
# in steady use was used a moment ago; should it break anyway, the statement fails and the unit of
# work is retried (jobs) or answered 5xx, and the pool drops the broken connection.
PING_AFTER_IDLE_S = 5.0


def _ping_when_idle(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info["dasi_checked_in"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("dasi_checked_in")
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return  # new, or in use a moment ago
        try:
            dbapi_connection.ping()
        except Exception as exc:
            raise DisconnectionError(f"connection idle for {time.monotonic() - since:.0f} s is gone") from exc


def create_engine(settings: Settings) -> AsyncEngine:
    engine = create_async_engine(
        async_database_url(settings.require_database_url()),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        # the connection used last goes out first, so its Postgres backend is likely still warm in the
        # CPU's caches; first in first out (the default) rotated ingest's transactions over all of
        # them, and the backends spent 0-7 us an event more (4 pairs, BENCHMARKS.md session 17)
        pool_use_lifo=True,
        connect_args={
            "server_settings": {
                # JIT compiling costs 50-200 ms a statement; short OLTP statements never earn it back
                "jit": "off",
                # asyncpg prepares every statement; after 5 runs Postgres may switch to a generic plan
                # that ignores the batch's arrays (measured: 127 ms instead of 4 ms for an id lookup)
                "plan_cache_mode": "force_custom_plan",
            }
        },
    )
    _ping_when_idle(engine)
    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


AfterCommit = Callable[[], Awaitable[object]]


_DRIVER = "dasi.driver_connection"


async def driver_connection(session: AsyncSession) -> Any:
    """The asyncpg connection under the session, inside the session's transaction. Set-based
    statements run on it directly: asyncpg encodes arrays and JSON texts natively, where SQLAlchemy
    would process every element.

    SQLAlchemy's asyncpg adapter begins lazily, on its own first statement; a statement sent straight
    to the driver before that would run in a transaction of its own (a claim or an advisory lock
    committed at once), so the transaction is begun here first, by the adapter itself (one round
    trip) so that it knows its transaction. The connection is kept in `session.info` for the
    transaction's life: finding it through SQLAlchemy costs two greenlet switches, and the ingest
    request path asks for it about eight times."""
    transaction = session.sync_session.get_transaction()
    kept = session.info.get(_DRIVER)
    if kept is not None and transaction is not None and kept[0] is transaction:
        return kept[1]
    connection = await session.connection()
    adapted: Any = (await connection.get_raw_connection()).dbapi_connection
    raw = adapted.driver_connection
    if not raw.is_in_transaction():
        begin = getattr(adapted, "_start_transaction", None)
        if begin is not None and getattr(adapted, "_transaction", False) is None:
            await begin()
        else:  # another adapter version: any statement begins it
            await connection.execute(text("SELECT 1"))
    session.info[_DRIVER] = (session.sync_session.get_transaction(), raw)
    return raw


# what asyncpg raises when its connection is gone or out of step with the server
_CONNECTION_LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)


@asynccontextmanager
async def driver_transaction(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[Any]:
    """A transaction straight on an asyncpg connection of the sessionmaker's pool: commit when the
    block ends cleanly, roll back when it raises. For a hot path whose statements all go to the
    driver (ingest's batches): a session's own begin, commit and close cost ~300 us of CPU more a
    transaction than the driver's (BENCHMARKS.md, ingest, session 18). No `after_commit` here."""
    engine = sessionmaker.kw["bind"]
    async with engine.connect() as connection:
        raw = (await connection.get_raw_connection()).driver_connection
        transaction = raw.transaction()
        try:
            await transaction.start()
            try:
                yield raw
            except BaseException:
                if not raw.is_closed():
                    await transaction.rollback()
                raise
            await transaction.commit()
        except BaseException as exc:
            # closed under us (Postgres restarted, the network dropped it): SQLAlchemy, which never
            # saw the statements, would hand it out again (and first: the pool is last in, first out)
            if raw.is_closed() or isinstance(exc, _CONNECTION_LOST):
                await connection.invalidate()
            raise


def after_commit(session: AsyncSession, action: AfterCommit) -> None:
    """Run `action` once the session's transaction has committed; drop it on rollback."""
    session.info.setdefault("after_commit", []).append(action)


async def _run_after_commit(session: AsyncSession) -> None:
    actions: list[AfterCommit] = session.info.pop("after_commit", [])
    for action in actions:
        try:
            await action()
        except Exception:
            # the data is committed; a failed publish is caught up by the outbox / retries
            log.exception("after_commit_action_failed")


@asynccontextmanager
async def session_scope(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit when the block ends cleanly, roll back when it raises."""
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            session.info.pop("after_commit", None)
            raise
    await _run_after_commit(session)
