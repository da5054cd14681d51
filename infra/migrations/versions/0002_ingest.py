"""Ingest: profiles, identities, events (monthly range partitions), received message ids, event outbox.

The partitions of `ingest.events` live in the schema `ingest_partitions`: alembic compares only the
service schemas, so the partitions (storage, not model) do not show up as drift. This creates one
partition a month for 2026-01 .. 2027-12 and a DEFAULT partition for anything outside that window
(clients with wrong clocks); later months are added by a later migration or maintenance job.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PARTITIONS = "ingest_partitions"
FIRST_MONTH = (2026, 1)
MONTHS = 24
EMPTY_JSON = sa.text("'{}'::jsonb")


def _months() -> list[tuple[str, str, str]]:
    """(partition name, from, to) for each month of the window."""
    year, month = FIRST_MONTH
    out = []
    for _ in range(MONTHS):
        next_year, next_month = (year + 1, 1) if month == 12 else (year, month + 1)
        out.append(
            (f"events_{year}_{month:02d}", f"{year}-{month:02d}-01", f"{next_year}-{next_month:02d}-01")
        )
        year, month = next_year, next_month
    return out


def upgrade() -> None:
    op.create_table(
        "profiles",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("traits", postgresql.JSONB(), server_default=EMPTY_JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["platform.workspaces.id"], name="fk_profiles_workspace_id_workspaces",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_profiles"),
        schema="ingest",
    )
    op.create_index(
        "ix_ingest_profiles_workspace_id_user_id", "profiles", ["workspace_id", "user_id"], schema="ingest"
    )

    op.create_table(
        "identities",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.CheckConstraint("kind IN ('user_id', 'anonymous_id')", name="ck_identities_kind"),
        sa.ForeignKeyConstraint(
            ["profile_id"], ["ingest.profiles.id"], name="fk_identities_profile_id_profiles",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "kind", "value", name="pk_identities"),
        schema="ingest",
    )
    op.create_index("ix_ingest_identities_profile_id", "identities", ["profile_id"], schema="ingest")

    op.create_table(
        "events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("properties", postgresql.JSONB(), server_default=EMPTY_JSON, nullable=False),
        sa.Column("context", postgresql.JSONB(), server_default=EMPTY_JSON, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "type IN ('track', 'identify', 'page', 'screen', 'alias', 'group')", name="ck_events_type"
        ),
        sa.PrimaryKeyConstraint("id", "occurred_at", name="pk_events"),
        schema="ingest",
        postgresql_partition_by="RANGE (occurred_at)",
    )
    op.create_index(
        "ix_ingest_events_workspace_id_profile_id_occurred_at",
        "events",
        ["workspace_id", "profile_id", "occurred_at"],
        schema="ingest",
    )
    op.create_index(
        "ix_ingest_events_workspace_id_occurred_at", "events", ["workspace_id", "occurred_at"], schema="ingest"
    )
    op.execute(f"CREATE SCHEMA IF NOT EXISTS {PARTITIONS}")
    for name, start, end in _months():
        op.execute(
            f"CREATE TABLE {PARTITIONS}.{name} PARTITION OF ingest.events "
            f"FOR VALUES FROM ('{start} 00:00:00+00') TO ('{end} 00:00:00+00')"
        )
    op.execute(f"CREATE TABLE {PARTITIONS}.events_default PARTITION OF ingest.events DEFAULT")

    op.create_table(
        "received_messages",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "message_id", name="pk_received_messages"),
        schema="ingest",
    )

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


def downgrade() -> None:
    op.drop_table("event_outbox", schema="ingest")
    op.drop_table("received_messages", schema="ingest")
    op.drop_table("events", schema="ingest")  # drops its partitions too
    op.execute(f"DROP SCHEMA IF EXISTS {PARTITIONS}")
    op.drop_table("identities", schema="ingest")
    op.drop_table("profiles", schema="ingest")
