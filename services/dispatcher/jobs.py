"""Handing work to the dispatcher worker (arq queue `dispatch`)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence

from arq.connections import ArqRedis

from shared.contracts import DISPATCH_QUEUE, SendBatch

DISPATCH_BATCH = "dispatch_batch"
DISPATCH_RUN = "dispatch_run"


def batch_job_id(batch: SendBatch) -> str:
    """The same batch (workspace and keys) is one job: an enqueue repeated is harmless."""
    digest = hashlib.sha256(
        "\n".join([str(batch.workspace_id), *(m.idempotency_key for m in batch.messages)]).encode()
    ).hexdigest()[:32]
    return f"dispatch:{digest}"


async def enqueue_batch(redis: ArqRedis, batch: SendBatch) -> None:
    await redis.enqueue_job(
        DISPATCH_BATCH, batch.to_job_payload(), _job_id=batch_job_id(batch), _queue_name=DISPATCH_QUEUE
    )


async def enqueue_run(redis: ArqRedis, message_ids: Sequence[uuid.UUID]) -> None:
    """Send these recorded messages on (an API send, a fallback a report asked for). No fixed job
    id: a message may need several runs over its life, and claiming it is atomic anyway."""
    ids = [str(i) for i in message_ids]
    if ids:
        await redis.enqueue_job(DISPATCH_RUN, {"ids": ids}, _queue_name=DISPATCH_QUEUE)
