"""Dispatcher: templates (with the alimtalk review state), sender profiles, suppressions.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _workspace_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["workspace_id"],
        ["platform.workspaces.id"],
        name=f"fk_{table}_workspace_id_workspaces",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS dispatcher")
    op.create_table(
        "templates",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("is_ad", sa.Boolean(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("subject", sa.String(200), nullable=True),
        sa.Column("fallback_body", sa.Text(), nullable=True),
        sa.Column("image_url", sa.String(2000), nullable=True),
        sa.Column("buttons", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("variables", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("alimtalk_template_code", sa.String(64), nullable=True),
        sa.Column("review_state", sa.String(16), nullable=True),
        sa.Column("review_reason", sa.Text(), nullable=True),
        sa.Column(
            "review_history", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False
        ),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "channel IN ('alimtalk', 'friendtalk', 'brand_message', 'sms', 'push', 'email')",
            name="ck_templates_channel",
        ),
        sa.CheckConstraint(
            "review_state IS NULL OR review_state IN ('registered', 'under_review', 'approved', 'rejected')",
            name="ck_templates_review_state",
        ),
        sa.CheckConstraint("channel <> 'alimtalk' OR NOT is_ad", name="ck_templates_alimtalk_not_ad"),
        _workspace_fk("templates"),
        sa.PrimaryKeyConstraint("id", name="pk_templates"),
        sa.UniqueConstraint("workspace_id", "name", name="uq_templates_workspace_id_name"),
        schema="dispatcher",
    )
    op.create_table(
        "sender_profiles",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("is_default", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("store_name", sa.String(100), nullable=False),
        sa.Column(
            "sender_numbers", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False
        ),
        sa.Column("opt_out_number", sa.String(20), nullable=True),
        sa.Column("opt_out_verified", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("kakao_sender_key", sa.String(100), nullable=True),
        sa.Column("kakao_channel_id", sa.String(100), nullable=True),
        sa.Column("kakao_ad_cutoff", sa.Time(), server_default="20:50", nullable=False),
        sa.Column("email_from", sa.String(320), nullable=True),
        sa.Column("email_from_name", sa.String(100), nullable=True),
        sa.Column("email_verified", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        _workspace_fk("sender_profiles"),
        sa.PrimaryKeyConstraint("id", name="pk_sender_profiles"),
        sa.UniqueConstraint("workspace_id", "name", name="uq_sender_profiles_workspace_id_name"),
        schema="dispatcher",
    )
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("address", sa.String(512), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "channel IN ('all', 'sms', 'kakao', 'push', 'email')", name="ck_suppressions_channel"
        ),
        sa.CheckConstraint(
            "source IN ('080', 'email_one_click', 'provider', 'manual')", name="ck_suppressions_source"
        ),
        _workspace_fk("suppressions"),
        sa.PrimaryKeyConstraint("id", name="pk_suppressions"),
        sa.UniqueConstraint(
            "workspace_id", "address", "channel", name="uq_suppressions_workspace_id_address_channel"
        ),
        schema="dispatcher",
    )
    op.create_index(
        "ix_dispatcher_suppressions_workspace_id_created_at",
        "suppressions",
        ["workspace_id", "created_at"],
        schema="dispatcher",
    )


def downgrade() -> None:
    op.drop_table("suppressions", schema="dispatcher")
    op.drop_table("sender_profiles", schema="dispatcher")
    op.drop_table("templates", schema="dispatcher")
