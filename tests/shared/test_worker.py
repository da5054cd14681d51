"""Jobs: called directly and run by a real arq worker in burst mode; enqueued only after commit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select

from shared.contracts import EventRecorded, decode
from shared.db import session_scope
from shared.publisher import enqueue_after_commit
from shared.testing.fixtures import run_worker_burst
from shared.worker import job_session, worker_settings
from shared.workspaces import Workspace

QUEUE = "test:rename"


async def rename_workspace(ctx, payload):
    """A job in the house style: a JSON contract in, one unit of work, an idempotent effect."""
    message = decode(payload)
    assert isinstance(message, EventRecorded)
    async with job_session(ctx) as session:
        workspace = await session.get(Workspace, message.workspace_id)
        workspace.name = f"seen {message.name}"
    return str(message.event_id)


def recorded(workspace_id: uuid.UUID, name: str) -> EventRecorded:
    return EventRecorded(
        workspace_id=workspace_id,
        event_id=uuid.uuid4(),
        profile_id=uuid.uuid4(),
        type="track",
        name=name,
        occurred_at=datetime(2026, 11, 23, tzinfo=UTC),
    )


async def workspace_name(db, workspace_id):
    async with session_scope(db) as session:
        return (
            await session.execute(select(Workspace.name).where(Workspace.id == workspace_id))
        ).scalar_one()


async def test_job_called_directly(db, make_workspace):
    shop = await make_workspace()
    await rename_workspace({"sessionmaker": db}, recorded(shop.workspace.id, "direct").to_job_payload())
    assert await workspace_name(db, shop.workspace.id) == "seen direct"


async def test_job_run_by_a_burst_worker_after_commit(db, redis, settings, make_workspace):
    shop = await make_workspace()
    async with session_scope(db) as session:
        for attempt in range(2):  # the same job id twice: the repeat is harmless
            enqueue_after_commit(
                session,
                redis,
                "rename_workspace",
                recorded(shop.workspace.id, "queued"),
                job_id=f"rename:{shop.workspace.id}",
                queue_name=QUEUE,
            )
            assert attempt >= 0 and await redis.zcard(QUEUE) == 0  # nothing before the commit
    assert await redis.zcard(QUEUE) == 1

    WorkerSettings = worker_settings("test", [rename_workspace], queue_name=QUEUE, settings=settings)
    worker = await run_worker_burst(WorkerSettings, settings)
    assert worker.jobs_complete == 1 and worker.jobs_failed == 0
    assert await workspace_name(db, shop.workspace.id) == "seen queued"
