"""The segmenter worker. Run: arq services.segmenter.worker.WorkerSettings

- every second (and at start): read the `dasi:events` stream in the `segmenter` consumer group and
  re-evaluate the materialized segments for the profiles whose events arrived
  (services/segmenter/live.py);
- every minute (and at start): fully refresh the segments whose schedule is due
  (services/segmenter/materialize.py).
"""

from __future__ import annotations

from typing import Any

from arq.cron import cron

from services.segmenter.live import consume_events
from services.segmenter.materialize import refresh_due
from shared.worker import worker_settings

QUEUE = "dasi:segmenter"
REFRESH_BATCH = 100  # segments per run of the cron job; the rest are due at the next minute


async def refresh_due_segments(ctx: dict[str, Any], *, limit: int = REFRESH_BATCH) -> int:
    """arq job (cron, every minute): refresh the segments whose schedule is due; returns how many."""
    return await refresh_due(ctx["sessionmaker"], ctx["clock"], limit=limit)


WorkerSettings = worker_settings(
    "segmenter",
    [consume_events, refresh_due_segments],
    queue_name=QUEUE,
    cron_jobs=[
        cron(consume_events, second=set(range(60)), run_at_startup=True, timeout=30),
        cron(refresh_due_segments, second={5}, run_at_startup=True, timeout=600),
    ],
)
