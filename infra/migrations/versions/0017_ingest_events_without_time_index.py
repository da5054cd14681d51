"""Ingest: the events lose their (workspace_id, occurred_at) index, which no statement reads.

A workspace's events are read by profile (a profile's recent events, a merge, a recompute: the
(workspace_id, profile_id, occurred_at) index), by primary key (the outbox publisher), or not at
all: the other services read the events stream. Each event still paid an entry in this index:
`store_batch` 15.3 / 15.6 / 15.8 -> 14.2 / 12.5 / 15.1 us of Postgres an event without it
(`infra.bench.ingest_steps --per-transaction 5`, 3 pairs; BENCHMARKS.md, ingest, session 19).
Old months still go whole (partitions by `occurred_at`).

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_ingest_events_workspace_id_occurred_at"


def upgrade() -> None:
    op.drop_index(INDEX, table_name="events", schema="ingest")


def downgrade() -> None:
    op.create_index(INDEX, "events", ["workspace_id", "occurred_at"], schema="ingest")
