"""One alembic tree: models and migrations agree, and it goes down and up again cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import asyncpg
import orjson
from sqlalchemy.engine import make_url

from infra import migrate
from shared.contracts import EventsRecorded
from shared.testing.plugin import _asyncpg_dsn, _create_database, _drop_database, test_servers


def test_models_and_migrations_agree(settings):
    migrate.check(settings.require_database_url())  # raises on drift


@contextlib.contextmanager
def _scratch_database() -> Iterator[str]:
    """A database of its own on the test servers, dropped after: its URL."""
    server_url = test_servers().servers.database_url
    name = f"dasi_mig_{uuid.uuid4().hex[:8]}"
    asyncio.run(_create_database(server_url, name))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_drop_database(server_url, name))


def test_downgrade_to_base_and_upgrade_again():
    with _scratch_database() as url:
        migrate.upgrade(url)
        migrate.downgrade(url, "base")
        migrate.upgrade(url)
        migrate.check(url)


_STORE_EVENTS = """
    INSERT INTO ingest.events (id, workspace_id, profile_id, message_id, type, name, occurred_at, received_at)
    VALUES ($1, $4, $5, 'm-1', 'track', 'Product Viewed', '2026-11-20 10:00+09', '2026-11-20 10:00:05+09'),
           ($2, $4, $5, 'm-2', 'page', '/', '2026-11-20 10:01+09', '2026-11-20 10:01:05+09'),
           ($3, $4, $5, 'm-3', 'track', 'Order Completed', '2026-11-20 10:02+09', '2026-11-20 10:01:05+09')
"""
_OUTBOX_ROW_PER_EVENT = """
    INSERT INTO ingest.event_outbox (event_id, workspace_id, profile_id, type, name, occurred_at, created_at)
    SELECT id, workspace_id, profile_id, type, name, occurred_at, received_at FROM ingest.events
"""


async def _fetch(url: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    connection = await asyncpg.connect(**_asyncpg_dsn(url, make_url(url).database or ""))
    try:
        return [tuple(row) for row in await connection.fetch(sql, *args)]
    finally:
        await connection.close()


def test_unpublished_events_stay_unpublished_across_the_outbox_reshaping():
    """0012 turns one outbox row per event into one per stored transaction, and back."""
    first, second, third, workspace, profile = (uuid.uuid4() for _ in range(5))
    with _scratch_database() as url:
        migrate.upgrade(url, "0011")
        asyncio.run(_fetch(url, _STORE_EVENTS, first, second, third, workspace, profile))
        asyncio.run(_fetch(url, _OUTBOX_ROW_PER_EVENT))

        migrate.upgrade(url, "0012")
        batches = asyncio.run(_fetch(url, "SELECT event_ids FROM ingest.event_outbox ORDER BY id"))
        assert [set(ids) for (ids,) in batches] == [{first}, {second, third}]  # stored together

        migrate.downgrade(url, "0011")
        rows = asyncio.run(_fetch(url, "SELECT event_id, profile_id, name FROM ingest.event_outbox"))
        assert sorted(rows) == sorted(
            [(first, profile, "Product Viewed"), (second, profile, "/"), (third, profile, "Order Completed")]
        )


def test_the_dedupe_window_gets_its_event_ids_back_on_downgrade():
    """0014 keeps only the messageIds; going back, each gets its event's id and arrival where the
    event is still kept, and the nil uuid where it is not."""
    first, second, third, workspace, profile = (uuid.uuid4() for _ in range(5))
    with _scratch_database() as url:
        migrate.upgrade(url, "0014")
        asyncio.run(_fetch(url, _STORE_EVENTS, first, second, third, workspace, profile))
        asyncio.run(
            _fetch(
                url,
                "INSERT INTO ingest.received_messages VALUES ($1, 'm-1', 0), ($1, 'm-gone', 0)",
                workspace,
            )
        )

        migrate.downgrade(url, "0013")
        rows = asyncio.run(
            _fetch(url, "SELECT message_id, event_id, received_at IS NOT NULL FROM ingest.received_messages")
        )
        assert sorted(rows) == [("m-1", first, True), ("m-gone", uuid.UUID(int=0), True)]


_OUTBOX_ARRAYS = """
    INSERT INTO ingest.event_outbox
        (workspace_id, event_ids, event_times, profile_ids, types, names, created_at)
    SELECT workspace_id, array_agg(id ORDER BY occurred_at), array_agg(occurred_at ORDER BY occurred_at),
           array_agg(profile_id ORDER BY occurred_at), array_agg(type ORDER BY occurred_at),
           array_agg(name ORDER BY occurred_at), max(received_at)
    FROM ingest.events GROUP BY workspace_id
"""


def test_unpublished_events_keep_what_the_stream_says_of_them_across_the_outbox_bodies():
    """0019 writes a pending outbox row's events as the publisher wrote them (the stream's JSON),
    and reads them back into arrays going down."""
    first, second, third, workspace, profile = (uuid.uuid4() for _ in range(5))
    with _scratch_database() as url:
        migrate.upgrade(url, "0018")
        asyncio.run(_fetch(url, _STORE_EVENTS, first, second, third, workspace, profile))
        asyncio.run(_fetch(url, _OUTBOX_ARRAYS))

        migrate.upgrade(url, "0019")
        [(events, body, profiles)] = asyncio.run(
            _fetch(url, "SELECT events, body, profile_ids FROM ingest.event_outbox")
        )
        assert (events, profiles) == (3, [profile])
        entry = EventsRecorded.model_validate({"workspace_id": workspace, "events": orjson.loads(body)})
        assert [(e.event_id, e.profile_id, e.type, e.name) for e in entry.events] == [
            (first, profile, "track", "Product Viewed"),
            (second, profile, "page", "/"),
            (third, profile, "track", "Order Completed"),
        ]
        assert entry.events[0].occurred_at == datetime(2026, 11, 20, 1, 0, tzinfo=UTC)

        migrate.downgrade(url, "0018")
        [(ids, times, profiles, types, names)] = asyncio.run(
            _fetch(url, "SELECT event_ids, event_times, profile_ids, types, names FROM ingest.event_outbox")
        )
        assert (ids, profiles, types) == ([first, second, third], [profile] * 3, ["track", "page", "track"])
        assert names == ["Product Viewed", "/", "Order Completed"]
        assert times[0] == datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
