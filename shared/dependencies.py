"""Per-process resources (made in the app's lifespan) and the FastAPI dependencies that hand them out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from arq.connections import ArqRedis
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.clock import Clock
from shared.db import session_scope
from shared.settings import Settings


@dataclass
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: ArqRedis
    clock: Clock


def resources_of(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


# The dependencies are `async def` though they never wait: FastAPI runs a plain `def` dependency in
# its thread pool, a hand-off to a thread and back for each request (~0.1 ms).
async def get_resources(request: Request) -> Resources:
    return resources_of(request)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work. Used with scope="function", so the commit happens before the
    response is sent: a 2xx means committed, and a failed commit is an error response."""
    async with session_scope(resources_of(request).sessionmaker) as session:
        yield session


async def get_redis(request: Request) -> ArqRedis:
    return resources_of(request).redis


async def get_clock(request: Request) -> Clock:
    return resources_of(request).clock


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
RedisDep = Annotated[ArqRedis, Depends(get_redis)]
ClockDep = Annotated[Clock, Depends(get_clock)]
ResourcesDep = Annotated[Resources, Depends(get_resources)]
