"""The ingest worker: re-publishes outbox rows the requests could not (Redis was down) every 5 s.
Run: arq services.ingest.worker.WorkerSettings"""

from __future__ import annotations

from arq.cron import cron

from services.ingest.relay import relay_outbox
from shared.worker import worker_settings

QUEUE = "dasi:ingest"

WorkerSettings = worker_settings(
    "ingest",
    [relay_outbox],
    queue_name=QUEUE,
    cron_jobs=[cron(relay_outbox, second=set(range(0, 60, 5)), run_at_startup=True, timeout=60)],
)
