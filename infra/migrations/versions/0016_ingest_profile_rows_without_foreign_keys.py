"""Ingest: a profile's aggregates, cart, product views, coupons and consents keep no foreign key.

Each row inserted into them fired a foreign-key check: a trigger running a query that finds and
locks (FOR KEY SHARE) the profile's row. A batch of 300 events inserts ~150 such rows (new product
views and cart items mostly), and the checks cost Postgres ~3-5 us an event, 10-15% of its time
(`infra.bench.ingest_steps --per-transaction 3`, with and without the triggers, 3 pairs).

Only ingest's batch functions write these rows, for profiles found or made under the batch's locks,
and a profile is deleted in one place, a merge, which now deletes the source's rows itself
(services/ingest/repository.py). The identities keep their key (they are inserted only for a new
shopper), and so does the profile's own key to its workspace.

The downgrade deletes rows whose profile is gone, then puts the keys back.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("profile_aggregates", "cart_items", "product_views", "coupons", "consents")


def upgrade() -> None:
    for table in TABLES:
        op.drop_constraint(f"fk_{table}_profile_id_profiles", table, schema="ingest", type_="foreignkey")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"""
            DELETE FROM ingest.{table} AS t
            WHERE NOT EXISTS (SELECT 1 FROM ingest.profiles AS p WHERE p.id = t.profile_id)
        """)  # noqa: S608 - built from constants
        op.create_foreign_key(
            f"fk_{table}_profile_id_profiles",
            table,
            "profiles",
            ["profile_id"],
            ["id"],
            source_schema="ingest",
            referent_schema="ingest",
            ondelete="CASCADE",
        )
