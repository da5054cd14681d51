"""The ingest worker. Run: arq services.ingest.worker.WorkerSettings

- every second (and at start): publish the outbox to the events stream, draining it for ~1 s
  (services/ingest/relay.py);
- daily at 03:10 UTC (and at start): make the next months' event partitions, drop months past
  DASI_EVENTS_RETENTION_MONTHS;
- hourly at :20 (and at start): start the dedupe window's next generation when it is due
  (services/ingest/dedupe.py).
"""

from __future__ import annotations

from arq.cron import cron

from services.ingest.dedupe import rotate_dedupe_window
from services.ingest.partitions import maintain_partitions
from services.ingest.relay import relay_outbox
from shared.worker import worker_settings

QUEUE = "dasi:ingest"

WorkerSettings = worker_settings(
    "ingest",
    [relay_outbox, maintain_partitions, rotate_dedupe_window],
    queue_name=QUEUE,
    cron_jobs=[
        cron(relay_outbox, second=set(range(60)), run_at_startup=True, timeout=30),
        cron(maintain_partitions, hour={3}, minute={10}, second={0}, run_at_startup=True, timeout=600),
        cron(rotate_dedupe_window, minute={20}, second={0}, run_at_startup=True, timeout=60),
    ],
)
