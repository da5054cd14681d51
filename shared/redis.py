"""Redis clients. One ArqRedis per process: it is a redis.asyncio.Redis that can also enqueue jobs."""

from __future__ import annotations

from typing import Any

import orjson
from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool

from shared.settings import Settings


def serialize_job(payload: dict[str, Any]) -> bytes:
    # jobs carry JSON, never pickles: payloads are pydantic contracts dumped to JSON
    return orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS)


def deserialize_job(raw: bytes) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads(raw)
    return result


def create_redis(settings: Settings) -> ArqRedis:
    """A lazily connecting client: a process starts even while Redis is down (readyz says so)."""
    pool = ConnectionPool.from_url(
        settings.require_redis_url(), socket_connect_timeout=2, health_check_interval=30
    )
    return ArqRedis(pool_or_conn=pool, job_serializer=serialize_job, job_deserializer=deserialize_job)
