"""Schemas for every service, and the platform tables: workspaces and API keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMAS = ("platform", "ingest", "segmenter", "scheduler", "dispatcher", "attribution")


def upgrade() -> None:
    for schema in SCHEMAS:
        op.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    op.create_table(
        "workspaces",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), server_default="Asia/Seoul", nullable=False),
        sa.Column("currency", sa.String(3), server_default="KRW", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_workspaces"),
        schema="platform",
    )
    key_kind = postgresql.ENUM("write", "secret", name="api_key_kind", schema="platform")
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("kind", key_kind, nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("display_prefix", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["platform.workspaces.id"], name="fk_api_keys_workspace_id_workspaces",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
        schema="platform",
    )
    op.create_index("ix_platform_api_keys_workspace_id", "api_keys", ["workspace_id"], schema="platform")


def downgrade() -> None:
    op.drop_table("api_keys", schema="platform")
    op.drop_table("workspaces", schema="platform")
    op.execute("DROP TYPE platform.api_key_kind")
    for schema in reversed(SCHEMAS[1:]):
        op.execute(f"DROP SCHEMA IF EXISTS {schema}")
