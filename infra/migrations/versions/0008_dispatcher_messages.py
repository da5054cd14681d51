"""Dispatcher: messages (one outcome each), delivery attempts (crash-safe submissions) and the
delivery-report inbox.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "delivery_reports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("provider_ref", sa.String(length=200), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("resend_status", sa.String(length=8), server_default="", nullable=False),
        sa.Column("cost_krw", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_reports")),
        sa.UniqueConstraint(
            "provider", "provider_ref", "outcome", "code", "resend_status", name="uq_delivery_reports_fact"
        ),
        schema="dispatcher",
    )
    op.create_index(
        "ix_dispatcher_delivery_reports_unapplied",
        "delivery_reports",
        ["provider", "provider_ref"],
        unique=False,
        schema="dispatcher",
        postgresql_where=sa.text("applied_at IS NULL"),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=True),
        sa.Column("address", sa.String(length=320), nullable=True),
        sa.Column("campaign_id", sa.Uuid(), nullable=True),
        sa.Column("trigger_id", sa.Uuid(), nullable=True),
        sa.Column("step", sa.String(length=64), nullable=True),
        sa.Column("chain", postgresql.ARRAY(sa.String(length=16)), nullable=False),
        sa.Column("chain_pos", sa.Integer(), server_default="0", nullable=False),
        sa.Column("tries", sa.Integer(), server_default="0", nullable=False),
        sa.Column("template_id", sa.Uuid(), nullable=True),
        sa.Column(
            "templates",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("content", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "variables",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("is_ad", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("night_policy", sa.String(length=8), server_default="defer", nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column("cost_krw", sa.Integer(), server_default="0", nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('campaign', 'trigger', 'transactional', 'test')", name=op.f("ck_messages_kind")
        ),
        sa.CheckConstraint("night_policy IN ('defer', 'skip')", name=op.f("ck_messages_night_policy")),
        sa.CheckConstraint(
            "status IN ('queued', 'deferred', 'sending', 'sent', 'delivered', 'delivered_via_fallback', 'skipped', 'failed')",
            name=op.f("ck_messages_status"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["platform.workspaces.id"],
            name=op.f("fk_messages_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint(
            "workspace_id", "idempotency_key", name="uq_messages_workspace_id_idempotency_key"
        ),
        schema="dispatcher",
    )
    op.create_index(
        "ix_dispatcher_messages_not_before_waiting",
        "messages",
        ["not_before"],
        unique=False,
        schema="dispatcher",
        postgresql_where=sa.text("status IN ('queued', 'deferred')"),
    )
    op.create_index(
        "ix_dispatcher_messages_workspace_id_campaign_id",
        "messages",
        ["workspace_id", "campaign_id"],
        unique=False,
        schema="dispatcher",
    )
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("provider_key", sa.String(length=64), nullable=False),
        sa.Column("provider_ref", sa.String(length=200), nullable=True),
        sa.Column("provider_fallback", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("code", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("resend_status", sa.String(length=8), nullable=True),
        sa.Column("cost_krw", sa.Integer(), server_default="0", nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('submitting', 'pending', 'done')", name=op.f("ck_delivery_attempts_state")
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["dispatcher.messages.id"],
            name=op.f("fk_delivery_attempts_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
        sa.UniqueConstraint("message_id", "seq", name="uq_delivery_attempts_message_id_seq"),
        sa.UniqueConstraint("provider", "provider_key", name="uq_delivery_attempts_provider_provider_key"),
        sa.UniqueConstraint("provider", "provider_ref", name="uq_delivery_attempts_provider_provider_ref"),
        schema="dispatcher",
    )
    op.create_index(
        "ix_dispatcher_delivery_attempts_open",
        "delivery_attempts",
        ["state", "submitted_at"],
        unique=False,
        schema="dispatcher",
        postgresql_where=sa.text("state IN ('submitting', 'pending')"),
    )


def downgrade() -> None:
    op.drop_table("delivery_attempts", schema="dispatcher")
    op.drop_table("messages", schema="dispatcher")
    op.drop_table("delivery_reports", schema="dispatcher")
