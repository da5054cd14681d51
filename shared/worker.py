"""arq worker settings for a service: resources made on startup and closed on shutdown, JSON job
payloads, a short poll delay, job ids bound to the logs, and one session scope per unit of work."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import structlog
from arq.connections import RedisSettings
from arq.cron import CronJob
from arq.worker import Function
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import Clock, SystemClock
from shared.db import create_engine, create_sessionmaker, session_scope
from shared.logging import configure_logging
from shared.redis import deserialize_job, serialize_job
from shared.runtime import tune_gc
from shared.settings import Settings, get_settings


@asynccontextmanager
async def job_session(ctx: dict[str, Any]) -> AsyncIterator[AsyncSession]:
    """The job's unit of work: commits when the block ends, rolls back if it raises."""
    async with session_scope(ctx["sessionmaker"]) as session:
        yield session


def worker_settings(
    service: str,
    functions: Sequence[Any],
    *,
    queue_name: str,
    cron_jobs: Sequence[CronJob] = (),
    settings: Settings | None = None,
    clock: Clock | None = None,
    **overrides: Any,
) -> type:
    """Build the `WorkerSettings` class arq expects (`arq services.<name>.worker.WorkerSettings`)."""
    settings = settings or get_settings()

    async def on_startup(ctx: dict[str, Any]) -> None:
        configure_logging(settings, f"{service}-worker")
        # arq's command line sets its logger to INFO itself: let DASI_LOG_LEVEL decide (two lines a job)
        logging.getLogger("arq").setLevel(logging.NOTSET)
        engine = create_engine(settings)
        tune_gc()
        ctx.update(
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            clock=clock or SystemClock(),
        )

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if "engine" in ctx:
            await ctx["engine"].dispose()

    async def on_job_start(ctx: dict[str, Any]) -> None:
        structlog.contextvars.bind_contextvars(job_id=ctx.get("job_id"))

    async def on_job_end(ctx: dict[str, Any]) -> None:
        structlog.contextvars.unbind_contextvars("job_id", "workspace_id")

    attributes: dict[str, Any] = {
        "functions": list(functions),
        "cron_jobs": list(cron_jobs),
        "queue_name": queue_name,
        "redis_settings": RedisSettings.from_dsn(settings.require_redis_url())
        if settings.redis_url
        else None,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "on_job_start": on_job_start,
        "on_job_end": on_job_end,
        "job_serializer": serialize_job,
        "job_deserializer": deserialize_job,
        "poll_delay": settings.worker_poll_delay_s,
        "handle_signals": True,
        **overrides,
    }
    return type("WorkerSettings", (), attributes)


__all__ = ["Function", "job_session", "worker_settings"]
