"""Ingest: the dedupe window keeps messageIds only.

`received_messages` also kept each message's event id and when it was received. Nothing read them:
an event already carries its messageId (`events.message_id`) and its time of arrival. Every claim
wrote them for every message, a uuid and a timestamp more a row and in the claim's parameters.

The downgrade adds them back and fills them from the events where those are still kept; a messageId
whose event is gone (its month dropped) gets the nil uuid and the current generation's start.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # on the partitioned table: its partitions drop them too (no rewrite: a dropped column is hidden)
    op.execute("ALTER TABLE ingest.received_messages DROP COLUMN event_id, DROP COLUMN received_at")


def downgrade() -> None:
    op.execute("ALTER TABLE ingest.received_messages ADD COLUMN event_id uuid, ADD COLUMN received_at timestamptz")
    op.execute("""
        UPDATE ingest.received_messages AS r SET event_id = e.id, received_at = e.received_at
        FROM ingest.events AS e
        WHERE e.workspace_id = r.workspace_id AND e.message_id = r.message_id
    """)
    op.execute("""
        UPDATE ingest.received_messages
        SET event_id = '00000000-0000-0000-0000-000000000000',
            received_at = coalesce((SELECT started_at FROM ingest.dedupe_window), now())
        WHERE event_id IS NULL
    """)
    op.execute(
        "ALTER TABLE ingest.received_messages ALTER COLUMN event_id SET NOT NULL,"
        " ALTER COLUMN received_at SET NOT NULL"
    )
