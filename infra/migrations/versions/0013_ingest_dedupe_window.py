"""Ingest: messageIds are kept for a window, not forever.

`received_messages` grew by a row for every message ever accepted, and each batch inserts into its
key at random places: past the size of memory, every insert reads the disk. It is now partitioned
by `generation` (LIST, three partitions in `ingest_partitions`): a batch claims its messageIds in
the current generation, after checking the previous one, and the ingest worker empties the oldest
partition (TRUNCATE) when it starts the next generation (services/ingest/dedupe.py). The one-row
table `dedupe_window` says which generation is current and since when.

Its key compares messageIds byte by byte (`COLLATE "C"`): they are opaque ids, and the database's
collation cost ~1 us a claimed id more (a throwaway benchmark, 3 runs).

The ids already received go to generation 0, the first current one: they are still recognised for
two windows.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PARTITIONS = "ingest_partitions"
GENERATIONS = 3


def _rename_old(new: str) -> None:
    op.rename_table("received_messages", new, schema="ingest")
    op.execute(f"ALTER TABLE ingest.{new} RENAME CONSTRAINT pk_received_messages TO pk_{new}")


def upgrade() -> None:
    _rename_old("received_messages_unwindowed")
    op.create_table(
        "received_messages",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.String(255, collation="C"), nullable=False),
        sa.Column("generation", sa.SmallInteger(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "message_id", "generation", name="pk_received_messages"),
        schema="ingest",
        postgresql_partition_by="LIST (generation)",
    )
    for generation in range(GENERATIONS):
        op.execute(
            f"CREATE TABLE {PARTITIONS}.received_messages_{generation} "
            f"PARTITION OF ingest.received_messages FOR VALUES IN ({generation})"
        )
    op.create_table(
        "dedupe_window",
        sa.Column("one_row", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("generation", sa.SmallInteger(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("one_row", name="ck_dedupe_window_one_row"),
        sa.CheckConstraint(f"generation >= 0 AND generation < {GENERATIONS}", name="ck_dedupe_window_generation"),
        sa.PrimaryKeyConstraint("one_row", name="pk_dedupe_window"),
        schema="ingest",
    )
    op.execute("INSERT INTO ingest.dedupe_window (generation, started_at) VALUES (0, now())")
    op.execute("""
        INSERT INTO ingest.received_messages (workspace_id, message_id, generation, event_id, received_at)
        SELECT workspace_id, message_id, 0, event_id, received_at FROM ingest.received_messages_unwindowed
    """)
    op.drop_table("received_messages_unwindowed", schema="ingest")


def downgrade() -> None:
    _rename_old("received_messages_windowed")
    op.create_table(
        "received_messages",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "message_id", name="pk_received_messages"),
        schema="ingest",
    )
    op.execute("""
        INSERT INTO ingest.received_messages (workspace_id, message_id, event_id, received_at)
        SELECT DISTINCT ON (workspace_id, message_id) workspace_id, message_id, event_id, received_at
        FROM ingest.received_messages_windowed
        ORDER BY workspace_id, message_id, received_at
    """)
    op.drop_table("received_messages_windowed", schema="ingest")  # its partitions go with it
    op.drop_table("dedupe_window", schema="ingest")
