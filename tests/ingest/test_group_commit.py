"""Group commit (services/ingest/group_commit.py): requests that gather while a transaction runs
are stored together in the next one, each still told its own counts; a failing transaction of
several requests fails only the request that cannot go through; workspaces never share one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from asyncpg.transaction import Transaction

from services.ingest import service
from services.ingest.group_commit import GroupCommit
from tests.ingest.conftest import events_of, track_drafts

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def transactions(monkeypatch) -> list[list[int]]:
    """The parts (their sizes) of each transaction group commit runs."""
    runs: list[list[int]] = []
    record = service.record_drafts

    async def counted(connection, workspace_id, parts, **kwargs):
        runs.append([len(part) for part in parts])
        return await record(connection, workspace_id, parts, **kwargs)

    monkeypatch.setattr(service, "record_drafts", counted)
    return runs


async def test_requests_that_gather_share_a_transaction(db, shop, transactions):
    group = GroupCommit(db)
    store = shop.workspace
    first, second, third = await asyncio.gather(
        group.record(store.id, store.timezone, track_drafts("a1", "a2"), NOW),
        group.record(store.id, store.timezone, track_drafts("b1", "a1"), NOW),  # a1 again: a duplicate
        group.record(store.id, store.timezone, track_drafts("c1", "c1", "c2"), NOW),  # c1 twice
    )
    assert transactions == [[2], [2, 3]]  # the first went at once, the others gathered behind it
    assert (first.accepted, first.duplicates) == (2, 0)
    assert (second.accepted, second.duplicates) == (2, 1)
    assert (third.accepted, third.duplicates) == (3, 1)
    assert sorted(e.message_id for e in await events_of(db, store.id)) == ["a1", "a2", "b1", "c1", "c2"]


def _slow_first_commit(monkeypatch) -> tuple[asyncio.Event, asyncio.Event]:
    """The first COMMIT waits (as on a slow disk) until let through: (committing, let it commit)."""
    first_committing, let_it_commit = asyncio.Event(), asyncio.Event()
    commit = Transaction.commit

    async def slow_first_commit(self: Transaction) -> None:
        if not first_committing.is_set():
            first_committing.set()
            await let_it_commit.wait()
        await commit(self)

    monkeypatch.setattr(Transaction, "commit", slow_first_commit)
    return first_committing, let_it_commit


def _held_once_stored(monkeypatch, message_id: str) -> tuple[asyncio.Event, asyncio.Event]:
    """The transaction storing `message_id` waits, its statements run, until let through:
    (stored, let it go on)."""
    stored, let_go = asyncio.Event(), asyncio.Event()
    record = service.record_drafts

    async def held(connection, workspace_id, parts, **kwargs):
        recorded = await record(connection, workspace_id, parts, **kwargs)
        if any(d.message_id == message_id for part in parts for d in part):
            stored.set()
            await let_go.wait()
        return recorded

    monkeypatch.setattr(service, "record_drafts", held)
    return stored, let_go


def _sender(group: GroupCommit, store) -> Callable[[str, str], asyncio.Task]:
    """Sends one message of a shopper of `store` to `group`, as a request of its own."""

    def send(message_id: str, user: str) -> asyncio.Task:
        return asyncio.create_task(
            group.record(store.id, store.timezone, track_drafts(message_id, user=user), NOW)
        )

    return send


async def test_with_nothing_waiting_a_request_need_not_wait_for_a_commit(db, shop, monkeypatch, transactions):
    """A COMMIT waits for the disk; a request arriving meanwhile, with none before it, need not."""
    first_committing, let_it_commit = _slow_first_commit(monkeypatch)
    group = GroupCommit(db)
    store = shop.workspace
    first = asyncio.create_task(group.record(store.id, store.timezone, track_drafts("a1"), NOW))
    await first_committing.wait()

    second = group.record(store.id, store.timezone, track_drafts("b1", user="member-2"), NOW)
    assert (await asyncio.wait_for(second, timeout=10)).accepted == 1
    assert not first.done()
    let_it_commit.set()
    assert (await first).accepted == 1
    assert transactions == [[1], [1]]
    assert sorted(e.message_id for e in await events_of(db, store.id)) == ["a1", "b1"]


async def test_requests_waiting_as_a_transaction_commits_go_after_it_with_those_arriving_meanwhile(
    db, shop, monkeypatch, transactions
):
    """Under load the next transaction waits for the COMMIT, and so gathers more requests."""
    first_committing, let_it_commit = _slow_first_commit(monkeypatch)
    first_stored, store_first = _held_once_stored(monkeypatch, "a1")
    send = _sender(GroupCommit(db), shop.workspace)

    requests = [send("a1", "member-1")]
    await first_stored.wait()
    requests += [send("b1", "member-2"), send("c1", "member-3")]  # waiting as the first commits
    await asyncio.sleep(0.05)
    store_first.set()
    await first_committing.wait()
    requests.append(send("d1", "member-4"))  # arrives during the COMMIT
    await asyncio.sleep(0.05)
    let_it_commit.set()

    assert [r.accepted for r in await asyncio.gather(*requests)] == [1, 1, 1, 1]
    assert transactions == [[1], [1, 1, 1]]


async def test_a_failing_request_fails_alone(db, shop, monkeypatch, transactions):
    record = service.record_drafts

    async def refuse_poison(connection, workspace_id, parts, **kwargs):
        if any(d.message_id == "poison" for part in parts for d in part):
            raise RuntimeError("cannot store this one")
        return await record(connection, workspace_id, parts, **kwargs)

    monkeypatch.setattr(service, "record_drafts", refuse_poison)
    group = GroupCommit(db)
    store = shop.workspace
    results = await asyncio.gather(
        group.record(store.id, store.timezone, track_drafts("a1"), NOW),
        group.record(store.id, store.timezone, track_drafts("b1"), NOW),
        group.record(store.id, store.timezone, track_drafts("poison"), NOW),
        group.record(store.id, store.timezone, track_drafts("c1"), NOW),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == ["Recorded", "Recorded", "RuntimeError", "Recorded"]
    assert sorted(e.message_id for e in await events_of(db, store.id)) == ["a1", "b1", "c1"]


async def test_workspaces_never_share_a_transaction(db, make_workspace, transactions):
    group = GroupCommit(db)
    one, other = (
        (await make_workspace("다시 스토어")).workspace,
        (await make_workspace("다른 스토어")).workspace,
    )
    await asyncio.gather(
        group.record(one.id, one.timezone, track_drafts("a1"), NOW),
        group.record(other.id, other.timezone, track_drafts("b1"), NOW),
        group.record(one.id, one.timezone, track_drafts("a2"), NOW),
        group.record(other.id, other.timezone, track_drafts("b2"), NOW),
    )
    assert sorted(transactions) == [[1], [1], [1], [1]]  # each workspace: one at once, one gathered
    assert sorted(e.message_id for e in await events_of(db, one.id)) == ["a1", "a2"]
    assert sorted(e.message_id for e in await events_of(db, other.id)) == ["b1", "b2"]


async def test_a_transaction_takes_at_most_max_events(db, shop, transactions):
    group = GroupCommit(db, max_events=3)
    store = shop.workspace
    await asyncio.gather(
        *(group.record(store.id, store.timezone, track_drafts(f"m{i}a", f"m{i}b"), NOW) for i in range(4))
    )
    assert transactions == [[2], [2], [2], [2]]  # two requests would make 4 events


async def test_a_transaction_ending_late_does_not_lift_the_limit_for_those_after_it(
    db, shop, monkeypatch, transactions
):
    """A transaction whose COMMIT outlasts the next transaction of its workspace leaves the
    workspace's later requests to wait their turn: one transaction at work at once (max_running)."""
    first_committing, let_it_commit = _slow_first_commit(monkeypatch)
    third_running, let_third_end = _held_once_stored(monkeypatch, "c1")
    send = _sender(GroupCommit(db), shop.workspace)

    first = send("a1", "member-1")
    try:
        await first_committing.wait()
        assert (await send("b1", "member-2")).accepted == 1  # went during the first's COMMIT, and ended
        third = send("c1", "member-3")
        await third_running.wait()
        let_it_commit.set()
        assert (await first).accepted == 1  # the first ends while the third is at work

        fourth = send("d1", "member-4")
        await asyncio.sleep(0.1)
        assert transactions == [[1], [1], [1]]  # the fourth waits for the third
    finally:  # nothing left hanging when an assertion fails
        let_it_commit.set()
        let_third_end.set()
    assert [(await r).accepted for r in (third, fourth)] == [1, 1]
    assert transactions == [[1], [1], [1], [1]]
