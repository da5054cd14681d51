"""A batch reads the rows of the shoppers it names, not the workspace's: its cost must not grow with
the store. Ingest runs its statements on generic plans (repository.use_generic_plans), where the
planner guesses a workspace is 0.5% of a table; statements that let it choose a workspace-wide path
read every profile per batch.

The batch below holds every kind of write: a known and a new shopper, traits and consents, a cart,
a purchase that empties it, a product view, and an identity merge (alias)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from services.ingest import service
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
    SELECT relname, seq_tup_read + coalesce(idx_tup_fetch, 0)
    FROM pg_stat_xact_user_tables WHERE schemaname = 'ingest'
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
    ]


async def _record(session, workspace, messages) -> None:
    await service.record_messages(
        session, workspace.id, messages, timezone=workspace.timezone, received_at=NOW
    )


async def test_a_small_batch_reads_only_its_shoppers_rows(db, make_workspace):
    store = (await make_workspace("큰 스토어")).workspace
    for start in range(0, SHOPPERS, 1000):
        async with session_scope(db) as session:
            await _record(session, store, [m for n in range(start, start + 1000) for m in _shopper(n)])

    # as autovacuum would have by now; it also drops the plans cached while the tables were empty
    async with session_scope(db) as session:
        for table in TABLES:
            await session.execute(text(f"ANALYZE ingest.{table}"))

    batch = [
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
    async with session_scope(db) as session:
        before = dict((await session.execute(_READS)).all())
        await _record(session, store, batch)
        after = dict((await session.execute(_READS)).all())
    reads = {table: count - before.get(table, 0) for table, count in after.items()}

    # every table holds thousands of this workspace's rows; the batch names four shoppers
    assert max(reads.values()) < 100, str(sorted(reads.items()))
