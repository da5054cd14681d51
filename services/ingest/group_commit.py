"""Group commit: the tracking requests of one workspace that arrive while its batch is being stored
are stored together, in the next transaction.

A transaction costs a fixed amount whatever its size (its BEGIN, two server-side functions' calls
and its COMMIT, each a round trip and a wake-up of a Postgres backend), and on a busy process that
cost is most of a 100-event batch's. It runs straight on the driver's connection
(`driver_transaction`), where a session's own begin and commit cost ~300 us of CPU more.

Nothing waits on purpose: a request that finds nothing running starts at once; under load,
requests gather behind the running transactions and the next one takes them all (up to
`max_events`). Each request returns only when the transaction holding its messages has committed,
so a 2xx still means committed.

A transaction's COMMIT waits for its WAL to reach the disk (~1 ms here, far more while a
checkpoint writes). When no request is waiting as it sends its COMMIT, a request that arrives
meanwhile starts at once instead of waiting for that disk (`max_running` then does not count the
committing transaction). When requests are waiting, the next transaction starts after the COMMIT, and
takes those that arrived during it too: under load, starting it at once halved the requests a
transaction took (3 to 2), and so raised the fixed cost an event (BENCHMARKS.md, session 16).

If a transaction of several requests fails, each is stored again on its own: a request that cannot
go through fails alone, and the others' messages are kept. Storing again is safe: a messageId
already stored is a duplicate, and a failed transaction stored nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ingest import service
from services.ingest.drafts import Draft
from services.ingest.service import Recorded
from shared.db import driver_transaction

log = structlog.get_logger(__name__)


@dataclass
class _Request:
    drafts: Sequence[Draft]
    received_at: datetime
    done: asyncio.Future[Recorded]


@dataclass
class _Workspace:
    timezone: str
    waiting: list[_Request] = field(default_factory=list)
    running: int = 0


@dataclass
class GroupCommit:
    sessionmaker: async_sessionmaker[AsyncSession]
    max_events: int = 2000  # a transaction takes at most this many (a request is never split)
    max_running: int = 1  # transactions of one workspace at work at once (not counting those committing)
    _workspaces: dict[uuid.UUID, _Workspace] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def record(
        self, workspace_id: uuid.UUID, timezone: str, drafts: Sequence[Draft], received_at: datetime
    ) -> Recorded:
        """Store one request's drafts, with whatever else of this workspace is waiting."""
        workspace = self._workspaces.setdefault(workspace_id, _Workspace(timezone))
        done: asyncio.Future[Recorded] = asyncio.get_running_loop().create_future()
        workspace.waiting.append(_Request(drafts, received_at, done))
        self._start(workspace_id, workspace)
        return await done

    def _start(self, workspace_id: uuid.UUID, workspace: _Workspace) -> None:
        while workspace.waiting and workspace.running < self.max_running:
            taken = [workspace.waiting.pop(0)]
            size = len(taken[0].drafts)
            while workspace.waiting and size + len(workspace.waiting[0].drafts) <= self.max_events:
                taken.append(workspace.waiting.pop(0))
                size += len(taken[-1].drafts)
            workspace.running += 1
            task = asyncio.create_task(self._run(workspace_id, workspace, taken))
            self._tasks.add(task)  # the loop keeps only a weak reference to a task
            task.add_done_callback(self._tasks.discard)

    async def _run(self, workspace_id: uuid.UUID, workspace: _Workspace, taken: list[_Request]) -> None:
        slot = _Slot(workspace, lambda: self._free_slot(workspace_id, workspace))
        try:
            await self._store(workspace_id, workspace.timezone, taken, slot)
        finally:
            slot.free()
            # forgotten when idle; by then the entry may be a newer one (this transaction's COMMIT
            # outlasted the next transaction, which forgot this one): that one stays
            idle = not workspace.waiting and not workspace.running
            if idle and self._workspaces.get(workspace_id) is workspace:
                del self._workspaces[workspace_id]

    def _free_slot(self, workspace_id: uuid.UUID, workspace: _Workspace) -> None:
        workspace.running -= 1
        self._start(workspace_id, workspace)

    async def _store(
        self, workspace_id: uuid.UUID, timezone: str, taken: list[_Request], slot: _Slot
    ) -> None:
        try:
            results = await self._transaction(workspace_id, timezone, taken, slot)
        except Exception as exc:
            if len(taken) == 1:
                _settle(taken[0].done, exc)
                return
            log.warning("group_commit_failed", requests=len(taken), exc_info=True)
            for request in taken:
                await self._store(workspace_id, timezone, [request], slot)
            return
        for request, recorded in zip(taken, results, strict=True):
            _settle(request.done, recorded)

    async def _transaction(
        self, workspace_id: uuid.UUID, timezone: str, taken: list[_Request], slot: _Slot
    ) -> list[Recorded]:
        async with driver_transaction(self.sessionmaker) as connection:
            results = await service.record_drafts(
                connection,
                workspace_id,
                [request.drafts for request in taken],
                timezone=timezone,
                received_at=min(request.received_at for request in taken),
            )
            slot.free_unless_waiting()  # the COMMIT is next
            return results


@dataclass
class _Slot:
    """A running transaction's place among `max_running`, given back once."""

    workspace: _Workspace
    give_back: Callable[[], None]
    freed: bool = False

    def free(self) -> None:
        if not self.freed:
            self.freed = True
            self.give_back()

    def free_unless_waiting(self) -> None:
        if not self.workspace.waiting:
            self.free()


def _settle(done: asyncio.Future[Recorded], outcome: Recorded | BaseException) -> None:
    if done.done():  # the request was cancelled (the client went away); its messages are stored
        return
    if isinstance(outcome, BaseException):
        done.set_exception(outcome)
    else:
        done.set_result(outcome)
