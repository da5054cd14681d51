"""One pipeline run for the `dispatch_batch` jobs a worker has in flight at the same time.

A run costs a fixed amount of work whatever its size (three transactions, a handful of statements,
one provider call per channel), so one worker process sends far more per core with few large runs
than with one run per job of ~100 messages. Each job adds its batch and waits for its own outcome:
a job returns only when the run that holds its batch has recorded every message of it.

A run takes every batch gathered when `max_messages` have gathered or `wait_s` after the first came,
but at most `max_runs` run at once: while they do, batches gather for the next. On a busy worker the
jobs start one by one, slowly (arq starts each with a few Redis round trips, between the runs' CPU
work), so a fixed wait alone would leave most runs with one batch.

If a merged run fails, each of its batches is run again on its own: a batch that cannot go through
fails only its own job (arq retries that job), and the others' messages still go out. Running a
batch again is safe: recording is keyed, and a repeated message's half-done attempt is looked up
before it is submitted again (`Dispatcher.dispatch_many`).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import structlog

from services.dispatcher.pipeline import Dispatcher
from shared.contracts import SendBatch

log = structlog.get_logger(__name__)

_Waiting = tuple[SendBatch, "asyncio.Future[list[uuid.UUID]]"]


@dataclass
class BatchCoalescer:
    dispatcher: Dispatcher
    max_messages: int = 1000  # a run starts at once when this many wait
    wait_s: float = 0.005  # ... or this long after the first batch came
    max_runs: int = 3  # ... unless this many run: then when one ends (batches gather meanwhile)
    _pending: list[_Waiting] = field(default_factory=list)
    _count: int = 0
    _timer: asyncio.TimerHandle | None = None
    _runs: set[asyncio.Task[None]] = field(default_factory=set)

    async def dispatch(self, batch: SendBatch) -> list[uuid.UUID]:
        """Send this batch together with the others in flight; returns its message ids."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[uuid.UUID]] = loop.create_future()
        self._pending.append((batch, future))
        self._count += len(batch.messages)
        if self._count >= self.max_messages:
            self._start()
        elif self._timer is None:
            self._timer = loop.call_later(self.wait_s, self._start)
        return await future

    async def close(self) -> None:
        """Run what has gathered and wait for every run (worker shutdown)."""
        while self._pending or self._runs:
            self._start()
            await asyncio.gather(*self._runs, return_exceptions=True)

    def _start(self) -> None:
        """Start a run of the batches gathered (up to `max_messages`), and more while full ones
        wait, as long as fewer than `max_runs` run; the first run to end starts the next."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending and len(self._runs) < self.max_runs:
            self._run_next()
            if self._count < self.max_messages:
                break
        if self._pending and len(self._runs) < self.max_runs:
            self._timer = asyncio.get_running_loop().call_later(self.wait_s, self._start)

    def _run_next(self) -> None:
        taken: list[_Waiting] = []
        size = 0
        while self._pending and (not taken or size + len(self._pending[0][0].messages) <= self.max_messages):
            taken.append(self._pending.pop(0))
            size += len(taken[-1][0].messages)
        self._count -= size
        task = asyncio.create_task(self._run(taken))
        self._runs.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._runs.discard(task)
        self._start()

    async def _run(self, taken: list[_Waiting]) -> None:
        try:
            try:
                results = await self.dispatcher.dispatch_many([batch for batch, _ in taken])
            except Exception as exc:
                if len(taken) == 1:
                    _fail(taken[0][1], exc)
                    return
                log.warning("merged_dispatch_failed", jobs=len(taken), exc_info=True)
                await asyncio.gather(*(self._alone(batch, future) for batch, future in taken))
                return
            for (_, future), ids in zip(taken, results, strict=True):
                if not future.done():  # a job cancelled (timeout, shutdown) no longer waits
                    future.set_result(ids)
        finally:
            for _, future in taken:
                future.cancel()  # only those still waiting: this run was cancelled itself

    async def _alone(self, batch: SendBatch, future: asyncio.Future[list[uuid.UUID]]) -> None:
        try:
            ids = await self.dispatcher.dispatch(batch)
        except Exception as exc:
            _fail(future, exc)
        else:
            if not future.done():
                future.set_result(ids)


def _fail(future: asyncio.Future[list[uuid.UUID]], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)
