"""Ingest: profile aggregates, cart items, product views and held coupons.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _profile_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["profile_id"], ["ingest.profiles.id"], name=f"fk_{table}_profile_id_profiles", ondelete="CASCADE"
    )


def _at(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "profile_aggregates",
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("visit_count", sa.Integer(), server_default="0", nullable=False),
        _at("first_visit_at"),
        _at("last_visit_at"),
        _at("last_seen_at"),
        sa.Column("session_page_views", sa.Integer(), server_default="0", nullable=False),
        _at("last_login_at"),
        sa.Column("purchase_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("purchase_total", sa.Numeric(18, 2), server_default="0", nullable=False),
        _at("last_purchase_at"),
        sa.Column("cart_item_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cart_total", sa.Numeric(18, 2), server_default="0", nullable=False),
        _at("cart_last_added_at"),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        _profile_fk("profile_aggregates"),
        sa.PrimaryKeyConstraint("profile_id", name="pk_profile_aggregates"),
        schema="ingest",
    )
    op.create_index(
        "ix_ingest_profile_aggregates_workspace_id", "profile_aggregates", ["workspace_id"], schema="ingest"
    )

    op.create_table(
        "cart_items",
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("product_id", sa.String(255), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("price", sa.Numeric(18, 2), nullable=True),
        _at("added_at", nullable=False),
        _profile_fk("cart_items"),
        sa.PrimaryKeyConstraint("profile_id", "product_id", name="pk_cart_items"),
        schema="ingest",
    )

    op.create_table(
        "product_views",
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("product_id", sa.String(255), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("category", sa.String(255), nullable=True),
        sa.Column("brand", sa.String(255), nullable=True),
        sa.Column("view_count", sa.Integer(), nullable=False),
        _at("first_viewed_at", nullable=False),
        _at("last_viewed_at", nullable=False),
        _profile_fk("product_views"),
        sa.PrimaryKeyConstraint("profile_id", "product_id", name="pk_product_views"),
        schema="ingest",
    )
    op.create_index(
        "ix_ingest_product_views_workspace_id_product_id", "product_views", ["workspace_id", "product_id"],
        schema="ingest",
    )

    op.create_table(
        "coupons",
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("coupon_id", sa.String(255), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        _at("expires_at"),
        _at("issued_at", nullable=False),
        _profile_fk("coupons"),
        sa.PrimaryKeyConstraint("profile_id", "coupon_id", name="pk_coupons"),
        schema="ingest",
    )
    op.create_index("ix_ingest_coupons_workspace_id_coupon_id", "coupons", ["workspace_id", "coupon_id"], schema="ingest")


def downgrade() -> None:
    for table in ("coupons", "product_views", "cart_items", "profile_aggregates"):
        op.drop_table(table, schema="ingest")
