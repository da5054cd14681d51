"""Ingest: the dedupe window's key leads with the messageId: (message_id, workspace_id, generation).

Every accepted message inserts one entry into this key, at a random place (messageIds are random),
and a message not known to be new probes it first. With the workspace first, each comparison on the
way down the btree compared the workspace's 16 bytes, equal for every entry of a store, before the
messageId; random messageIds differ in their first bytes, so leading with them ends a comparison
there. 500 random messageIds a transaction into 1,000,000 ids (3 rounds, backend CPU): 8.47-8.53 ->
7.51-7.70 us an id (BENCHMARKS.md, ingest, session 19). The claim's ON CONFLICT names the columns,
not their order, and every lookup gives all three.

The partitions' keys are rebuilt, the table locked meanwhile: 0.8 s for 1,000,000 ids on the bench's
server (2 cores).

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _primary_key(columns: str) -> None:
    op.execute(
        "ALTER TABLE ingest.received_messages DROP CONSTRAINT pk_received_messages, "
        f"ADD CONSTRAINT pk_received_messages PRIMARY KEY ({columns})"
    )


def upgrade() -> None:
    _primary_key("message_id, workspace_id, generation")


def downgrade() -> None:
    _primary_key("workspace_id, message_id, generation")
