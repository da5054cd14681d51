"""Ingest: member, channel friend and granted consents copied onto `profile_aggregates`.

The segmenter's member, channel-friend and consent conditions read these columns instead of the
`profiles.traits` JSON and the `consents` rows, so a segment built from them and the aggregates is
one read of `profile_aggregates` (services/ingest/flags.py keeps them current). Backfilled here from
the traits and the consents; every profile gets an aggregates row, as ingest now ensures.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TOPICS = ("sms", "kakao", "push", "email", "night")
COLUMNS = ["is_member", "kakao_channel_friend", *(f"consent_{topic}" for topic in TOPICS)]


def upgrade() -> None:
    for column in COLUMNS:
        op.add_column(
            "profile_aggregates",
            sa.Column(column, sa.Boolean(), server_default=sa.false(), nullable=False),
            schema="ingest",
        )
    granted = ", ".join(
        f"coalesce(bool_or(c.granted) FILTER (WHERE c.topic = '{topic}'), false)" for topic in TOPICS
    )
    assignments = ", ".join(f"{column} = excluded.{column}" for column in COLUMNS)
    op.execute(f"""
        INSERT INTO ingest.profile_aggregates AS a (profile_id, workspace_id, {", ".join(COLUMNS)}, updated_at)
        SELECT p.id, p.workspace_id, p.traits @> '{{"member": true}}',
               p.traits @> '{{"kakao_channel_friend": true}}', {granted}, now()
        FROM ingest.profiles p
        LEFT JOIN ingest.consents c ON c.profile_id = p.id AND c.workspace_id = p.workspace_id
        GROUP BY p.id
        ON CONFLICT (profile_id) DO UPDATE SET {assignments}
    """)  # noqa: S608 - built from constants


def downgrade() -> None:
    for column in reversed(COLUMNS):
        op.drop_column("profile_aggregates", column, schema="ingest")
