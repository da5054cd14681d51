"""Ingest: an outbox row holds its events as the stream tells them (JSON), written as they are stored.

The publisher built each stream entry's JSON in Postgres, from arrays of the events' ids, times,
profiles, types and names (0012): ~3.9 us of Postgres an event under load (BENCHMARKS.md, ingest,
session 19), a tenth of its time. Ingest's Python now writes that JSON as a request arrives
(services/ingest/drafts.py) and the batch's transaction stores it: `body`, a JSON array of at most
a few hundred events, with how many (`events`) and their profiles each once (`profile_ids`, which
the publisher checks for profiles merged away since). A transaction of more events writes a row per
few hundred (`store_batch`'s `outbox` array).

Rows not yet published are converted both ways (a row of more events than an entry takes becomes an
entry of its own). `body` is stored out of line as it is: this PostgreSQL build has no lz4, and pglz
would compress in software on every insert (not measured); uncompressed, the WAL an event grew by
~9-10% (BENCHMARKS.md, ingest, session 20).

`store_batch` is 0015's, with the outbox rows given where it made one from the events.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-25
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _store_batch_of_0015() -> str:
    path = Path(__file__).with_name("0015_ingest_batch_functions.py")
    spec = importlib.util.spec_from_file_location("migration_0015", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text: str = module.STORE_BATCH
    return text


_OLD_SIGNATURE = "events bytea,\n    profile_rows json,"
_NEW_SIGNATURE = "events bytea,\n    outbox bytea[], outbox_events int[], outbox_profiles uuid[], profile_rows json,"
_OLD_OUTBOX = """        INSERT INTO ingest.event_outbox
            (workspace_id, event_ids, event_times, profile_ids, types, names, created_at)
        SELECT workspace, array_agg(id), array_agg(occurred_at), array_agg(profile_id),
               array_agg(type), array_agg(name), now_at
        FROM input;  -- the aggregates of one group read the rows in one order: the arrays line up
"""
_NEW_OUTBOX = """        INSERT INTO ingest.event_outbox (workspace_id, events, body, profile_ids, created_at)
        SELECT workspace, o.events, o.body, outbox_profiles, now_at
        FROM unnest(outbox, outbox_events) WITH ORDINALITY AS o(body, events, n)
        ORDER BY o.n;
"""

_OLD_ARGUMENTS = "uuid, timestamptz, json, json, json, bytea, json, json, json, json, json, json, uuid[], uuid[]"
_NEW_ARGUMENTS = (
    "uuid, timestamptz, json, json, json, bytea, bytea[], int[], uuid[], json, json, json, json, json, json,"
    " uuid[], uuid[]"
)


def _replaced(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


_OLD_COMMENT = "-- the events, and their outbox row (one for them all)"
_NEW_COMMENT = "-- the events, and their outbox rows (as the stream tells them, written by the caller)"


def _new_store_batch() -> str:
    text = _store_batch_of_0015()
    for old, new in ((_OLD_SIGNATURE, _NEW_SIGNATURE), (_OLD_COMMENT, _NEW_COMMENT), (_OLD_OUTBOX, _NEW_OUTBOX)):
        text = _replaced(text, old, new)
    return text


# what the publisher wrote of each event (its take, before this migration)
_BODY_OF_ARRAYS = """
    convert_to('[' || (
        SELECT string_agg(
            '{"event_id":"' || u.event_id || '","profile_id":"' || u.profile_id
            || '","type":' || to_json(u.type)
            || ',"name":' || CASE WHEN u.type IN ('track', 'page', 'screen') AND u.name IS NOT NULL
                                  THEN to_json(u.name)::text ELSE 'null' END
            || ',"occurred_at":' || to_json(u.occurred_at) || '}',
            ',' ORDER BY u.n)
        FROM unnest(o.event_ids, o.profile_ids, o.types, o.names, o.event_times)
            WITH ORDINALITY AS u(event_id, profile_id, type, name, occurred_at, n)
    ) || ']', 'UTF8')
"""


def upgrade() -> None:
    op.execute("SET LOCAL TimeZone = 'UTC'")  # the JSON's times, as the publisher wrote them
    op.execute("ALTER TABLE ingest.event_outbox ADD COLUMN events integer, ADD COLUMN body bytea")
    op.execute("ALTER TABLE ingest.event_outbox ALTER COLUMN body SET STORAGE EXTERNAL")
    op.execute(f"""
        UPDATE ingest.event_outbox AS o
        SET events = cardinality(o.event_ids), body = {_BODY_OF_ARRAYS},
            profile_ids = ARRAY(SELECT DISTINCT p FROM unnest(o.profile_ids) AS p)
    """)  # noqa: S608
    op.execute("RESET TimeZone")
    op.execute("""
        ALTER TABLE ingest.event_outbox
            ALTER COLUMN events SET NOT NULL, ALTER COLUMN body SET NOT NULL,
            DROP COLUMN event_ids, DROP COLUMN event_times, DROP COLUMN types, DROP COLUMN names
    """)
    op.execute(f"DROP FUNCTION ingest.store_batch({_OLD_ARGUMENTS})")
    op.execute(_new_store_batch())


def downgrade() -> None:
    op.execute(f"DROP FUNCTION ingest.store_batch({_NEW_ARGUMENTS})")
    op.execute(_store_batch_of_0015())
    op.execute("""
        ALTER TABLE ingest.event_outbox
            ADD COLUMN event_ids uuid[], ADD COLUMN event_times timestamptz[],
            ADD COLUMN types varchar(16)[], ADD COLUMN names varchar(255)[]
    """)
    for column in ("event_ids", "event_times"):
        op.execute(f"ALTER TABLE ingest.event_outbox ALTER COLUMN {column} SET STORAGE EXTERNAL")
    op.execute("""
        UPDATE ingest.event_outbox AS o
        SET event_ids = e.ids, event_times = e.times, profile_ids = e.profiles, types = e.types,
            names = e.names
        FROM (
            SELECT x.id, array_agg((j->>'event_id')::uuid ORDER BY n) AS ids,
                   array_agg((j->>'occurred_at')::timestamptz ORDER BY n) AS times,
                   array_agg((j->>'profile_id')::uuid ORDER BY n) AS profiles,
                   array_agg(j->>'type' ORDER BY n) AS types, array_agg(j->>'name' ORDER BY n) AS names
            FROM ingest.event_outbox AS x
            CROSS JOIN LATERAL jsonb_array_elements(convert_from(x.body, 'UTF8')::jsonb)
                WITH ORDINALITY AS a(j, n)
            GROUP BY x.id
        ) AS e
        WHERE o.id = e.id
    """)
    op.execute("""
        ALTER TABLE ingest.event_outbox
            ALTER COLUMN event_ids SET NOT NULL, ALTER COLUMN event_times SET NOT NULL,
            ALTER COLUMN types SET NOT NULL, ALTER COLUMN names SET NOT NULL,
            DROP COLUMN events, DROP COLUMN body
    """)
