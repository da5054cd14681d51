"""The dispatcher worker. Run: arq services.dispatcher.worker.WorkerSettings

Queue `dispatch`:
- `dispatch_batch(SendBatch)`: the scheduler's batches (~100 messages a job: arq's ~2,200 jobs/s
  per process would cap one-message jobs far below the send rate); the batches of the jobs in
  flight at the same time go through the pipeline together (coalescing.py);
- `dispatch_run({"ids": [...]})`: recorded messages to send on (API sends, report-driven fallbacks).
Crons:
- every 5 s: messages whose `not_before` has come (night deferral, backoff, rate limits, Kakao hours)
  and queued ones whose job was lost;
- every minute: attempts left `submitting` by a dead worker (lookup, then resubmit if the provider
  never got them), reports that arrived while their submission was being recorded, and attempts
  with no report after DASI_DISPATCH_POLL_AFTER_S (a report may be lost: ask the provider).

The httpx client, the provider adapters, the breakers and the rate limiters are made on startup.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog
from arq.cron import cron

from services.dispatcher.coalescing import BatchCoalescer
from services.dispatcher.jobs import DISPATCH_BATCH, DISPATCH_RUN
from services.dispatcher.pipeline import Dispatcher
from services.dispatcher.provider_settings import ProviderSettings
from services.dispatcher.wiring import DispatchSettings, build_dispatcher
from shared.clock import Clock
from shared.contracts import DISPATCH_QUEUE, SendBatch, decode
from shared.settings import Settings
from shared.worker import worker_settings

log = structlog.get_logger(__name__)


def _coalescer(ctx: dict[str, Any]) -> BatchCoalescer:
    coalescer: BatchCoalescer = ctx["coalescer"]
    return coalescer


def _dispatcher(ctx: dict[str, Any]) -> Dispatcher:
    dispatcher: Dispatcher = ctx["dispatcher"]
    return dispatcher


async def dispatch_batch(ctx: dict[str, Any], payload: dict[str, Any]) -> int:
    batch = decode(payload)
    if not isinstance(batch, SendBatch):
        raise TypeError(f"dispatch_batch takes a SendBatch, not {batch.kind}")
    structlog.contextvars.bind_contextvars(workspace_id=str(batch.workspace_id))
    ids = await _coalescer(ctx).dispatch(batch)
    return len(ids)


async def dispatch_run(ctx: dict[str, Any], payload: dict[str, Any]) -> int:
    ids = [uuid.UUID(i) for i in payload["ids"]]
    await _dispatcher(ctx).run(ids)
    return len(ids)


async def send_due(ctx: dict[str, Any]) -> int:
    return await _dispatcher(ctx).send_due()


async def sweep(ctx: dict[str, Any]) -> dict[str, int]:
    dispatcher = _dispatcher(ctx)
    config: DispatchSettings = ctx["dispatch_settings"]
    return {
        "recovered": await dispatcher.recover(older_than=dispatcher.lease),
        "stray_reports": await dispatcher.apply_stray_reports(),
        "polled": await dispatcher.poll_pending(older_than=timedelta(seconds=config.poll_after_s)),
    }


def make_worker_settings(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    provider_settings: ProviderSettings | None = None,
    dispatch_settings: DispatchSettings | None = None,
    configure: Callable[[Dispatcher], None] | None = None,
    **overrides: Any,
) -> type:
    """The WorkerSettings class; tests pass their clock, the sandbox's provider settings and a hook."""
    base = worker_settings(
        "dispatcher",
        [dispatch_batch, dispatch_run, send_due, sweep],
        queue_name=DISPATCH_QUEUE,
        cron_jobs=[
            cron(send_due, second=set(range(0, 60, 5)), timeout=120),
            cron(sweep, second={30}, timeout=300),
        ],
        settings=settings,
        clock=clock,
        # jobs wait in the coalescer while runs go: enough in flight to fill the next run
        **{"max_jobs": 200, "job_timeout": 300, **overrides},
    )
    base_startup, base_shutdown = base.on_startup, base.on_shutdown  # type: ignore[attr-defined]

    async def on_startup(ctx: dict[str, Any]) -> None:
        await base_startup(ctx)
        config = dispatch_settings or DispatchSettings()
        dispatcher, close = build_dispatcher(
            ctx["settings"],
            ctx["sessionmaker"],
            ctx["clock"],
            provider_settings or ProviderSettings(),
            config,
        )
        if configure is not None:
            configure(dispatcher)
        coalescer = BatchCoalescer(
            dispatcher,
            max_messages=config.coalesce_messages,
            wait_s=config.coalesce_wait_ms / 1000,
            max_runs=config.coalesce_runs,
        )
        ctx.update(dispatcher=dispatcher, coalescer=coalescer, dispatch_settings=config, close_adapters=close)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if "coalescer" in ctx:
            await ctx["coalescer"].close()
        if "close_adapters" in ctx:
            await ctx["close_adapters"]()
        await base_shutdown(ctx)

    base.on_startup = on_startup  # type: ignore[attr-defined]
    base.on_shutdown = on_shutdown  # type: ignore[attr-defined]
    return base


WorkerSettings = make_worker_settings()

__all__ = ["DISPATCH_BATCH", "DISPATCH_RUN", "WorkerSettings", "make_worker_settings"]
