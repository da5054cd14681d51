"""Ingest: an index for segments asking about the last login ("last login before / after a date").

Covering (`profile_id` included) and partial (profiles that never signed in are not in it), so the
segmenter reads the matching aggregates from the index alone (an index-only scan where the
visibility map allows) instead of scanning every aggregates row of the workspace. Its cost to
ingest: one more index entry per new profile that signs in, and a sign-in that moves
`last_login_at` is no longer a HOT update (other aggregate updates still can be).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_ingest_profile_aggregates_workspace_id_last_login_at",
        "profile_aggregates",
        ["workspace_id", "last_login_at"],
        schema="ingest",
        postgresql_include=["profile_id"],
        postgresql_where=sa.text("last_login_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_ingest_profile_aggregates_workspace_id_last_login_at", "profile_aggregates", schema="ingest"
    )
