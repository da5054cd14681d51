"""Ingest: `store_batch` reads each event as a JSON array, its fields by position.

Each event came as a JSON object (`{"profile_id": ..., "id": ..., ...}`), read with
`jsonb_to_recordset`: ~80 bytes of keys an event to parse, an object to build and its keys to sort,
then each column looked up by key. As an array, `[profile_id, id, message_id, type, name, properties,
context, occurred_at]` (services/ingest/drafts.py, `EVENT_FIELDS`), each field is read by its
position. Backend CPU an event, inserting the bench's transactions of 500 events into `ingest.events`
(a scratch microbenchmark, 4 rounds): 7.6-9.3 us as objects, 7.0-7.8 as arrays (BENCHMARKS.md,
ingest, session 21).

The function is rewritten from its definition in the database (its signature is unchanged), the one
statement replaced; the downgrade puts it back.

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BY_KEY = """        WITH input AS (
            SELECT * FROM jsonb_to_recordset(convert_from(events, 'UTF8')::jsonb) AS e(
                id uuid, profile_id uuid, message_id text, type text, name text, properties jsonb,
                context jsonb, occurred_at timestamptz)
        ), stored AS ("""
_BY_POSITION = """        WITH input AS (  -- [profile_id, id, message_id, type, name, properties, context, occurred_at]
            SELECT (e->>1)::uuid AS id, (e->>0)::uuid AS profile_id, e->>2 AS message_id, e->>3 AS type,
                   e->>4 AS name, e->5 AS properties, e->6 AS context, (e->>7)::timestamptz AS occurred_at
            FROM jsonb_array_elements(convert_from(events, 'UTF8')::jsonb) AS e
        ), stored AS ("""


def _rewrite_store_batch(old: str, new: str) -> None:
    bind = op.get_bind()
    definition = bind.exec_driver_sql("SELECT pg_get_functiondef('ingest.store_batch'::regproc)").scalar()
    assert isinstance(definition, str) and definition.count(old) == 1, old
    op.execute(definition.replace(old, new))  # CREATE OR REPLACE FUNCTION, the same signature


def upgrade() -> None:
    _rewrite_store_batch(_BY_KEY, _BY_POSITION)


def downgrade() -> None:
    _rewrite_store_batch(_BY_POSITION, _BY_KEY)
