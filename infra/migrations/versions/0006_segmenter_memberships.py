"""Segmenter: cohorts (static lists), materialized memberships with entered / exited history, the
refresh state and schedule of saved segments.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "segmenter"


def _workspace_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["workspace_id"],
        ["platform.workspaces.id"],
        name=f"fk_{table}_workspace_id_workspaces",
        ondelete="CASCADE",
    )


def _segment_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["segment_id"], [f"{S}.segments.id"], name=f"fk_{table}_segment_id_segments", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.add_column(
        "segments",
        sa.Column("refresh_every_minutes", sa.Integer(), server_default="60", nullable=True),
        schema=S,
    )
    # segments saved before are refreshed hourly; new ones say what they want (services set it)
    op.alter_column("segments", "refresh_every_minutes", server_default=None, schema=S)
    op.create_table(
        "cohorts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("member_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _workspace_fk("cohorts"),
        sa.PrimaryKeyConstraint("id", name="pk_cohorts"),
        sa.UniqueConstraint("workspace_id", "name", name="uq_cohorts_workspace_id_name"),
        schema=S,
    )
    op.create_table(
        "cohort_members",
        sa.Column("cohort_id", sa.Uuid(), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cohort_id"], [f"{S}.cohorts.id"], name="fk_cohort_members_cohort_id_cohorts", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("cohort_id", "profile_id", name="pk_cohort_members"),
        schema=S,
    )
    op.create_table(
        "memberships",
        sa.Column("segment_id", sa.Uuid(), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        # no FK to segments (per-row trigger cost at a million rows); deleted with the segment by the service
        sa.PrimaryKeyConstraint("segment_id", "profile_id", name="pk_memberships"),
        schema=S,
    )
    op.create_table(
        "membership_changes",
        sa.Column("segment_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("change", sa.String(8), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("change IN ('entered', 'exited')", name="ck_membership_changes_change"),
        sa.PrimaryKeyConstraint("segment_id", "seq", name="pk_membership_changes"),
        schema=S,
    )
    # BRIN: the rows arrive in time order, so a few index pages answer "since a time"
    op.create_index(
        "ix_segmenter_membership_changes_at", "membership_changes", ["at"], schema=S, postgresql_using="brin"
    )
    op.create_table(
        "segment_refreshes",
        sa.Column("segment_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("member_count", sa.Integer(), nullable=False),
        sa.Column("entered", sa.Integer(), nullable=False),
        sa.Column("exited", sa.Integer(), nullable=False),
        sa.Column("took_ms", sa.Float(), nullable=False),
        _segment_fk("segment_refreshes"),
        sa.PrimaryKeyConstraint("segment_id", name="pk_segment_refreshes"),
        schema=S,
    )


def downgrade() -> None:
    op.drop_table("segment_refreshes", schema=S)
    op.drop_table("membership_changes", schema=S)
    op.drop_table("memberships", schema=S)
    op.drop_table("cohort_members", schema=S)
    op.drop_table("cohorts", schema=S)
    op.drop_column("segments", "refresh_every_minutes", schema=S)
