"""Ingest: indexes that lead with the workspace and end with the row's key.

A batch's statements find a shopper's rows by `workspace_id = $1 AND <key> = ANY($2)`. With an index
on `workspace_id` alone the planner could take that path and read the whole workspace (in a prepared
plan it guesses a workspace is 0.5% of the table); an index on both columns answers the condition
exactly and is always the cheaper path. `profile_aggregates`' workspace index gains the key (it still
serves the segmenter's workspace scans); `profiles` gets one of its own; `consents`' index on
(workspace_id, topic), read by nothing since the segmenter reads the flags (0010), becomes one on
(workspace_id, profile_id).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_ingest_profiles_workspace_id_id", "profiles", ["workspace_id", "id"], schema="ingest")
    op.create_index(
        "ix_ingest_profile_aggregates_workspace_id_profile_id",
        "profile_aggregates",
        ["workspace_id", "profile_id"],
        schema="ingest",
    )
    op.drop_index("ix_ingest_profile_aggregates_workspace_id", "profile_aggregates", schema="ingest")
    op.create_index(
        "ix_ingest_consents_workspace_id_profile_id", "consents", ["workspace_id", "profile_id"], schema="ingest"
    )
    op.drop_index("ix_ingest_consents_workspace_id_topic", "consents", schema="ingest")


def downgrade() -> None:
    op.create_index("ix_ingest_consents_workspace_id_topic", "consents", ["workspace_id", "topic"], schema="ingest")
    op.drop_index("ix_ingest_consents_workspace_id_profile_id", "consents", schema="ingest")
    op.create_index(
        "ix_ingest_profile_aggregates_workspace_id", "profile_aggregates", ["workspace_id"], schema="ingest"
    )
    op.drop_index("ix_ingest_profile_aggregates_workspace_id_profile_id", "profile_aggregates", schema="ingest")
    op.drop_index("ix_ingest_profiles_workspace_id_id", "profiles", schema="ingest")
