"""Ingest: the outbox holds one row per transaction, not one per event.

The row carries, as arrays in the same order, what the stream says of each event the transaction
stored: its id, `occurred_at`, profile, type and name. An event's row cost a heap tuple and two
index entries when stored, and a delete and their cleanup when published; a transaction's row costs
that once. A merge no longer moves outbox rows: the publisher reads back the events of profiles that
are gone (merged) for the profile they have then. Unpublished rows of the old shape become one row
per stored transaction (workspace and time stored), in the order they were stored, and back.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rename_old(old: str, new: str) -> None:
    op.rename_table(old, new, schema="ingest")
    op.execute(f"ALTER TABLE ingest.{new} RENAME CONSTRAINT pk_{old} TO pk_{new}")


def upgrade() -> None:
    _rename_old("event_outbox", "event_outbox_rows")
    op.execute("ALTER INDEX ingest.ix_ingest_event_outbox_created_at RENAME TO ix_ingest_event_outbox_rows_created_at")
    op.create_table(
        "event_outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("event_ids", postgresql.ARRAY(sa.Uuid()), nullable=False),
        sa.Column("event_times", postgresql.ARRAY(sa.DateTime(timezone=True)), nullable=False),
        sa.Column("profile_ids", postgresql.ARRAY(sa.Uuid()), nullable=False),
        sa.Column("types", postgresql.ARRAY(sa.String(16)), nullable=False),
        sa.Column("names", postgresql.ARRAY(sa.String(255)), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_event_outbox"),
        schema="ingest",
    )
    # random uuids do not compress: stored out of line as they are, without a try at compressing
    for column in ("event_ids", "event_times", "profile_ids"):
        op.execute(f"ALTER TABLE ingest.event_outbox ALTER COLUMN {column} SET STORAGE EXTERNAL")
    op.execute("""
        INSERT INTO ingest.event_outbox (workspace_id, event_ids, event_times, profile_ids, types, names, created_at)
        SELECT workspace_id, array_agg(event_id ORDER BY event_id), array_agg(occurred_at ORDER BY event_id),
               array_agg(profile_id ORDER BY event_id), array_agg(type ORDER BY event_id),
               array_agg(name ORDER BY event_id), created_at
        FROM ingest.event_outbox_rows
        GROUP BY workspace_id, created_at
        ORDER BY created_at
    """)
    op.drop_table("event_outbox_rows", schema="ingest")


def downgrade() -> None:
    _rename_old("event_outbox", "event_outbox_batches")
    op.create_table(
        "event_outbox",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_event_outbox"),
        schema="ingest",
    )
    op.create_index("ix_ingest_event_outbox_created_at", "event_outbox", ["created_at"], schema="ingest")
    op.execute("""
        INSERT INTO ingest.event_outbox (event_id, workspace_id, profile_id, type, name, occurred_at, created_at)
        SELECT u.event_id, b.workspace_id, u.profile_id, u.type, u.name, u.occurred_at, b.created_at
        FROM ingest.event_outbox_batches AS b
        CROSS JOIN LATERAL unnest(b.event_ids, b.event_times, b.profile_ids, b.types, b.names)
            AS u(event_id, occurred_at, profile_id, type, name)
    """)
    op.drop_table("event_outbox_batches", schema="ingest")
