"""A batch reads the rows of the shoppers it names, not the workspace's: its cost must not grow with
the store. Ingest runs its statements on generic plans (repository._PLAN_BY_KEY), where the planner
guesses a workspace's size from statistics that may be minutes old; statements that let it choose a
workspace-wide path read every profile per batch (or, joining two such paths, their square). The
test runs under the states of statistics a growing database goes through.

The batch below holds every kind of write: a known and a new shopper, traits and consents, a cart,
a purchase that empties it, a product view, and an identity merge (alias)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from services.ingest import dedupe, repository, service
from services.ingest.schemas import AliasMessage, IdentifyMessage, TrackMessage
from shared.db import session_scope

SHOPPERS = 3000
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

TABLES = (
    "profiles",
    "identities",
    "profile_aggregates",
    "consents",
    "cart_items",
    "product_views",
    "coupons",
)

# rows read from each table, scanned or fetched through an index: the counts of this backend not
# yet flushed to the statistics (earlier transactions' too, so a test takes the difference)
_READS = text("""
    SELECT coalesce(parent.relname, t.relname), sum(t.seq_tup_read + coalesce(t.idx_tup_fetch, 0))
    FROM pg_stat_xact_user_tables AS t
    LEFT JOIN pg_inherits AS i ON i.inhrelid = t.relid
    LEFT JOIN pg_class AS parent ON parent.oid = i.inhparent
    WHERE t.schemaname IN ('ingest', 'ingest_partitions')  -- the events' partitions are in the latter
    GROUP BY 1
""")


def _shopper(n: int) -> list[IdentifyMessage | TrackMessage]:
    user = f"member-{n}"
    return [
        IdentifyMessage.model_validate(
            {
                "type": "identify",
                "userId": user,
                "anonymousId": f"anon-{n}",
                "traits": {"name": "김민지", "member": True, "consents": {"sms": True, "kakao": "Y"}},
            }
        ),
        TrackMessage.model_validate(
            {
                "type": "track",
                "userId": user,
                "event": "Product Added",
                "properties": {"product_id": "P1", "name": "수분크림", "price": 28000, "quantity": 1},
            }
        ),
        TrackMessage.model_validate(
            {"type": "track", "userId": user, "event": "Product Viewed", "properties": {"product_id": "P3"}}
        ),
        TrackMessage.model_validate(
            {
                "type": "track",
                "userId": user,
                "event": "Coupon Issued",
                "properties": {"coupon_id": "WELCOME", "coupon_name": "첫 구매 10% 할인"},
            }
        ),
    ]


async def _record(session, workspace, messages) -> None:
    await service.record_messages(
        session, workspace.id, messages, timezone=workspace.timezone, received_at=NOW
    )


async def _analyze(db, tables=TABLES) -> None:
    async with session_scope(db) as session:
        for table in tables:
            await session.execute(text(f"ANALYZE ingest.{table}"))


async def _seed(db, store, *, analyze_after: int | None = None, tables=TABLES) -> None:
    """SHOPPERS shoppers in thousands; ANALYZE `tables` after the `analyze_after`-th thousand."""
    for thousand, start in enumerate(range(0, SHOPPERS, 1000), start=1):
        async with session_scope(db) as session:
            await _record(session, store, [m for n in range(start, start + 1000) for m in _shopper(n)])
        if thousand == analyze_after:
            await _analyze(db, tables)


async def _small_stores_analyzed(db, make_workspace) -> None:
    for n in range(100):
        small = (await make_workspace(f"작은 스토어 {n}")).workspace
        async with session_scope(db) as session:
            await _record(session, small, [m for k in range(3) for m in _shopper(k)])
    await _analyze(db)


# How far the statistics trail the big store when its batch comes. Plans cached while seeding stay
# until an ANALYZE of one of their tables drops them.
STATISTICS = {
    "never analyzed": {},  # a new database's first minute
    "analyzed": {"analyze_after": SHOPPERS // 1000},  # as autovacuum will have
    "analyzed at a third": {"analyze_after": 1},
    "some tables analyzed at a third": {"analyze_after": 1, "tables": ("profiles", "identities")},
    "a big store among small ones": {"small_stores_first": True},  # every workspace looks tiny
    # the dedupe window moved on: the seeded messageIds are the previous generation, looked up by key
    "never analyzed, ids a generation old": {"rotated": True},
    "analyzed, ids a generation old": {"analyze_after": SHOPPERS // 1000, "rotated": True},
}


async def _big_store(db, make_workspace, statistics: str):
    """A workspace of SHOPPERS shoppers, its statistics as `statistics` says."""
    how = dict(STATISTICS[statistics])
    if how.pop("small_stores_first", False):
        await _small_stores_analyzed(db, make_workspace)
    rotated, week = how.pop("rotated", False), timedelta(days=7)
    if rotated:  # the window's row, generation 0 from NOW (the test database starts without it)
        async with session_scope(db) as session:
            assert await dedupe.start_next_generation_if_due(session, NOW, week) is None
    store = (await make_workspace("큰 스토어")).workspace
    await _seed(db, store, **how)
    if rotated:
        async with session_scope(db) as session:
            assert await dedupe.start_next_generation_if_due(session, NOW + week, week) == 1
    return store


def _small_batch() -> list[IdentifyMessage | TrackMessage | AliasMessage]:
    return [
        *_shopper(7),  # known shopper: identify with consents, cart add
        TrackMessage.model_validate(
            {
                "type": "track",
                "userId": "member-7",
                "event": "Order Completed",
                "properties": {"total": 28000},
            }
        ),
        TrackMessage.model_validate(
            {
                "type": "track",
                "anonymousId": "visitor-1",
                "event": "Product Viewed",
                "properties": {"product_id": "P2", "name": "선크림"},
            }
        ),
        AliasMessage.model_validate({"type": "alias", "userId": "member-8", "previousId": "visitor-1"}),
        *_shopper(SHOPPERS + 1),  # a new shopper
    ]


async def _reads_of(session, work) -> dict[str, int]:
    """The rows `work(session)` reads from each table."""
    before = dict((await session.execute(_READS)).all())
    await work(session)
    after = dict((await session.execute(_READS)).all())
    return {table: count - before.get(table, 0) for table, count in after.items()}


@pytest.mark.parametrize("statistics", STATISTICS)
async def test_a_small_batch_reads_only_its_shoppers_rows(db, make_workspace, statistics):
    store = await _big_store(db, make_workspace, statistics)
    async with session_scope(db) as session:
        reads = await _reads_of(session, lambda s: _record(s, store, _small_batch()))

    # every table holds thousands of this workspace's rows; the batch names four shoppers
    assert max(reads.values()) < 100, str(sorted(reads.items()))


@pytest.mark.parametrize("statistics", STATISTICS)
async def test_publishing_a_small_batch_reads_only_its_shoppers_rows(db, make_workspace, statistics):
    """The outbox publisher checks each profile of the events it takes (one merged away since is read
    back by event): by key. As an anti-join it read every profile of the index on each take, and its
    plan, made once per connection, stayed so while the store grew (BENCHMARKS.md, session 19)."""
    store = await _big_store(db, make_workspace, statistics)
    # the seeding's rows go first: the take's plan is made now, on these statistics
    async with session_scope(db) as session:
        while (await repository.take_outbox(session, 100, 500)).rows == 100:
            pass
    async with session_scope(db) as session:
        await _record(session, store, _small_batch())  # its merge leaves visitor-1's events to read back
    taken: list[repository.TakenOutbox] = []

    async def take(session) -> None:
        taken.append(await repository.take_outbox(session, 100, 500))

    async with session_scope(db) as session:
        reads = await _reads_of(session, take)

    assert taken[0].rows == 1 and sum(entry.events for entry in taken[0].entries) == len(_small_batch())
    assert max(reads.values()) < 100, str(sorted(reads.items()))
