"""Ingest: consents (marketing per channel, night), with the time each was given.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("topic", sa.String(16), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("given_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("topic IN ('sms', 'kakao', 'push', 'email', 'night')", name="ck_consents_topic"),
        sa.ForeignKeyConstraint(
            ["profile_id"], ["ingest.profiles.id"], name="fk_consents_profile_id_profiles", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("profile_id", "topic", name="pk_consents"),
        schema="ingest",
    )
    op.create_index("ix_ingest_consents_workspace_id_topic", "consents", ["workspace_id", "topic"], schema="ingest")


def downgrade() -> None:
    op.drop_table("consents", schema="ingest")
