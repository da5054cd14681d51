"""The tables ingest owns, in the `ingest` schema: profiles, identities, events, received message ids
(dedupe, within a window) and the event outbox.

`events` is range-partitioned by `occurred_at` (monthly). Migration 0002 creates the partitions in
the schema `ingest_partitions`, which alembic does not compare: the partitions are storage, not
model, and keeping them beside the parent would make `alembic check` see tables it cannot map.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Uuid,
    false,
    func,
    text,
    true,
)
from sqlalchemy import Identity as GeneratedAlways  # `Identity` here is a shopper's id
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import PLATFORM_SCHEMA, Base

SCHEMA = "ingest"
PARTITIONS_SCHEMA = "ingest_partitions"

EVENT_TYPES = ("track", "identify", "page", "screen", "alias", "group")
IDENTITY_KINDS = ("user_id", "anonymous_id")
DEDUPE_GENERATIONS = 3  # partitions of received_messages: the current, the previous, the one emptied next

_EMPTY_JSON = text("'{}'::jsonb")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Profile(Base):
    """One shopper of one workspace; `user_id` is the store's id for them once known."""

    __tablename__ = "profiles"
    __table_args__ = (
        Index("ix_ingest_profiles_workspace_id_user_id", "workspace_id", "user_id"),
        Index("ix_ingest_profiles_workspace_id_id", "workspace_id", "id"),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{PLATFORM_SCHEMA}.workspaces.id", ondelete="CASCADE")
    )
    user_id: Mapped[str | None] = mapped_column(String(255))
    traits: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_EMPTY_JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Identity(Base):
    """An id a shopper was seen under (a userId or an anonymousId), pointing at their profile."""

    __tablename__ = "identities"
    __table_args__ = (
        CheckConstraint(_in("kind", IDENTITY_KINDS), name="kind"),
        {"schema": SCHEMA},
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(255), primary_key=True)
    profile_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{SCHEMA}.profiles.id", ondelete="CASCADE"), index=True
    )


class Event(Base):
    """What a shopper did. The primary key carries `occurred_at` because the table is partitioned by it."""

    __tablename__ = "events"
    __table_args__ = (
        CheckConstraint(_in("type", EVENT_TYPES), name="type"),
        Index(
            "ix_ingest_events_workspace_id_profile_id_occurred_at",
            "workspace_id",
            "profile_id",
            "occurred_at",
        ),
        # no index by time alone: no statement reads a workspace's events by time (migration 0017)
        {"schema": SCHEMA, "postgresql_partition_by": "RANGE (occurred_at)"},
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    workspace_id: Mapped[uuid.UUID]
    profile_id: Mapped[uuid.UUID]
    message_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(255))
    properties: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_EMPTY_JSON)
    context: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_EMPTY_JSON)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReceivedMessage(Base):
    """The messageIds accepted within the dedupe window: a repeat is answered 200 and ignored.
    Partitioned by `generation` (migration 0013, services/ingest/dedupe.py): the oldest generation
    is emptied whole when the next one starts. The keys only: an event carries its messageId (0014)."""

    __tablename__ = "received_messages"
    __table_args__ = (
        # the messageId first: random ids differ in their first bytes, so a btree comparison ends
        # there, where with the workspace first each compared its 16 equal bytes too (migration 0018)
        PrimaryKeyConstraint("message_id", "workspace_id", "generation"),
        {"schema": SCHEMA, "postgresql_partition_by": "LIST (generation)"},
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column()
    message_id: Mapped[str] = mapped_column(String(255, collation="C"))  # opaque ids
    generation: Mapped[int] = mapped_column(SmallInteger)


class DedupeWindow(Base):
    """One row: the generation of `received_messages` batches claim their messageIds in, and when it
    started."""

    __tablename__ = "dedupe_window"
    __table_args__ = (
        CheckConstraint("one_row", name="one_row"),
        CheckConstraint(f"generation >= 0 AND generation < {DEDUPE_GENERATIONS}", name="generation"),
        {"schema": SCHEMA},
    )

    one_row: Mapped[bool] = mapped_column(primary_key=True, server_default=true())
    generation: Mapped[int] = mapped_column(SmallInteger)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OutboxBatch(Base):
    """Events stored and not yet on the `dasi:events` stream, as it tells them: `body` is the JSON
    array of an `EventsRecorded` entry's `events` (shared/contracts.py), written as they were stored,
    with `events` of them (at most a few hundred: repository.EVENTS_PER_ENTRY) and their profiles,
    each once, as they were then (a merge since moves events to another: the publisher reads those
    back). The row is deleted once XADD succeeded (services/ingest/relay.py; migration 0019)."""

    __tablename__ = "event_outbox"
    __table_args__ = {"schema": SCHEMA}  # noqa: RUF012

    id: Mapped[int] = mapped_column(BigInteger, GeneratedAlways(always=True), primary_key=True)
    workspace_id: Mapped[uuid.UUID]
    events: Mapped[int]
    body: Mapped[bytes] = mapped_column(LargeBinary)
    profile_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# PROFILE_ROWS: the tables below hold rows of a profile (its aggregates, cart, views, coupons,
# consents) without a foreign key to it (migration 0016). Every batch inserts hundreds of them, and
# each insert's foreign-key check (a trigger running a query that locks the profile's row) cost
# Postgres ~3-5 us an event, 10-15% of its time (BENCHMARKS.md, ingest, session 18). They are
# written only by ingest's batch functions, for profiles they have just found or made under the
# batch's locks, and deleted with their profile where a profile is deleted (a merge's source,
# `repository._MERGE_STATEMENTS`); a workspace's deletion must delete them too.


class ProfileAggregates(Base):
    """What segments ask about a shopper, kept current with their events (services/ingest/aggregates.py)."""

    __tablename__ = "profile_aggregates"
    __table_args__ = (
        Index("ix_ingest_profile_aggregates_workspace_id_profile_id", "workspace_id", "profile_id"),
        # segments on the last login read it alone (migration 0009)
        Index(
            "ix_ingest_profile_aggregates_workspace_id_last_login_at",
            "workspace_id",
            "last_login_at",
            postgresql_include=["profile_id"],
            postgresql_where=text("last_login_at IS NOT NULL"),
        ),
        {"schema": SCHEMA},
    )

    profile_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # a profile's: see PROFILE_ROWS
    workspace_id: Mapped[uuid.UUID]
    visit_count: Mapped[int] = mapped_column(server_default="0")
    first_visit_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_visit_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True)
    )  # start of the latest visit
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # latest activity
    session_page_views: Mapped[int] = mapped_column(server_default="0")  # in the latest visit
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    purchase_count: Mapped[int] = mapped_column(server_default="0")
    purchase_total: Mapped[Decimal] = mapped_column(Numeric(18, 2), server_default="0")  # refunds subtracted
    last_purchase_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cart_item_count: Mapped[int] = mapped_column(server_default="0")
    cart_total: Mapped[Decimal] = mapped_column(Numeric(18, 2), server_default="0")
    cart_last_added_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # copied from the traits and consents for segments (services/ingest/flags.py, migration 0010)
    is_member: Mapped[bool] = mapped_column(server_default=false())
    kakao_channel_friend: Mapped[bool] = mapped_column(server_default=false())
    consent_sms: Mapped[bool] = mapped_column(server_default=false())
    consent_kakao: Mapped[bool] = mapped_column(server_default=false())
    consent_push: Mapped[bool] = mapped_column(server_default=false())
    consent_email: Mapped[bool] = mapped_column(server_default=false())
    consent_night: Mapped[bool] = mapped_column(server_default=false())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CartItem(Base):
    """A product in a shopper's current cart."""

    __tablename__ = "cart_items"
    __table_args__ = {"schema": SCHEMA}  # noqa: RUF012

    profile_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # a profile's: see PROFILE_ROWS
    product_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    workspace_id: Mapped[uuid.UUID]
    name: Mapped[str | None] = mapped_column(String(255))
    quantity: Mapped[int]
    price: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ProductView(Base):
    """A product a shopper viewed, how often and when."""

    __tablename__ = "product_views"
    __table_args__ = (
        Index("ix_ingest_product_views_workspace_id_product_id", "workspace_id", "product_id"),
        {"schema": SCHEMA},
    )

    profile_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # a profile's: see PROFILE_ROWS
    product_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    workspace_id: Mapped[uuid.UUID]
    name: Mapped[str | None] = mapped_column(String(255))
    category: Mapped[str | None] = mapped_column(String(255))
    brand: Mapped[str | None] = mapped_column(String(255))
    view_count: Mapped[int]
    first_viewed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_viewed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class HeldCoupon(Base):
    """A coupon issued to a shopper (`Coupon Issued`), with its expiry."""

    __tablename__ = "coupons"
    __table_args__ = (
        Index("ix_ingest_coupons_workspace_id_coupon_id", "workspace_id", "coupon_id"),
        {"schema": SCHEMA},
    )

    profile_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # a profile's: see PROFILE_ROWS
    coupon_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    workspace_id: Mapped[uuid.UUID]
    name: Mapped[str | None] = mapped_column(String(255))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Consent(Base):
    """A shopper's latest word on one topic: marketing by sms / kakao / push / email, or night sends."""

    __tablename__ = "consents"
    __table_args__ = (
        CheckConstraint("topic IN ('sms', 'kakao', 'push', 'email', 'night')", name="topic"),
        Index("ix_ingest_consents_workspace_id_profile_id", "workspace_id", "profile_id"),
        {"schema": SCHEMA},
    )

    profile_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # a profile's: see PROFILE_ROWS
    topic: Mapped[str] = mapped_column(String(16), primary_key=True)
    workspace_id: Mapped[uuid.UUID]
    granted: Mapped[bool]
    given_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# the tables of PROFILE_ROWS: what a profile's deletion must delete with it
PROFILE_ROW_TABLES = tuple(
    model.__tablename__ for model in (ProfileAggregates, CartItem, ProductView, HeldCoupon, Consent)
)
