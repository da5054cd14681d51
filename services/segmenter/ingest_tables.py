"""Read-only views of ingest's schema, for building the segment queries.

Ingest owns and writes these tables (services/ingest/models.py, migrations 0002-0004); the
segmenter only reads them, in SQL, as DESIGN.md allows. They live on a MetaData of their own, not on
shared.db.Base.metadata, so alembic never compares or creates them from here. Only the columns the
segment queries read are listed.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Integer, MetaData, Numeric, String, Table, Uuid
from sqlalchemy.dialects.postgresql import JSONB

SCHEMA = "ingest"
ingest_metadata = MetaData(schema=SCHEMA)


def _at(name: str) -> Column[object]:
    return Column(name, DateTime(timezone=True))


profiles = Table(
    "profiles",
    ingest_metadata,
    Column("id", Uuid, primary_key=True),
    Column("workspace_id", Uuid),
    Column("user_id", String),
    Column("traits", JSONB),
)

events = Table(
    "events",
    ingest_metadata,
    Column("id", Uuid),
    Column("workspace_id", Uuid),
    Column("profile_id", Uuid),
    _at("occurred_at"),
    Column("type", String),
    Column("name", String),
    Column("properties", JSONB),
)

aggregates = Table(
    "profile_aggregates",
    ingest_metadata,
    Column("profile_id", Uuid),
    Column("workspace_id", Uuid),
    Column("visit_count", Integer),
    _at("first_visit_at"),
    _at("last_visit_at"),
    _at("last_seen_at"),
    Column("session_page_views", Integer),
    _at("last_login_at"),
    Column("purchase_count", Integer),
    Column("purchase_total", Numeric),
    _at("last_purchase_at"),
    Column("cart_item_count", Integer),
    Column("cart_total", Numeric),
    _at("cart_last_added_at"),
    # copies of the member / channel-friend traits and the granted consents (ingest's flags.py)
    Column("is_member", Boolean),
    Column("kakao_channel_friend", Boolean),
    *(Column(f"consent_{topic}", Boolean) for topic in ("sms", "kakao", "push", "email", "night")),
)

cart_items = Table(
    "cart_items",
    ingest_metadata,
    Column("profile_id", Uuid),
    Column("workspace_id", Uuid),
    Column("product_id", String),
    _at("added_at"),
)

product_views = Table(
    "product_views",
    ingest_metadata,
    Column("profile_id", Uuid),
    Column("workspace_id", Uuid),
    Column("product_id", String),
    Column("category", String),
    Column("brand", String),
    _at("last_viewed_at"),
)

coupons = Table(
    "coupons",
    ingest_metadata,
    Column("profile_id", Uuid),
    Column("workspace_id", Uuid),
    Column("coupon_id", String),
    _at("expires_at"),
)
