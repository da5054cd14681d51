"""Reading profiles for the management API: the profile, its identities, aggregates, cart, products
viewed, coupons and events. Every query is scoped by workspace_id, so another workspace's id
finds nothing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest.models import (
    CartItem,
    Event,
    HeldCoupon,
    Identity,
    ProductView,
    Profile,
    ProfileAggregates,
)

PRODUCTS_VIEWED_LIMIT = 50


@dataclass(frozen=True)
class ProfileDetails:
    profile: Profile
    identities: list[Identity]
    aggregates: ProfileAggregates | None  # None until an event counts for one
    cart: list[CartItem]
    products_viewed: list[ProductView]
    coupons: list[HeldCoupon]


@dataclass(frozen=True)
class EventCursor:
    """Where a page of events ended: the next page holds the events strictly older."""

    occurred_at: datetime
    event_id: uuid.UUID | None = None  # None: everything at `occurred_at` is excluded too


async def find_profile(
    session: AsyncSession, workspace_id: uuid.UUID, profile_id: uuid.UUID
) -> Profile | None:
    return await session.scalar(
        select(Profile).where(Profile.workspace_id == workspace_id, Profile.id == profile_id)
    )


async def find_profile_id(
    session: AsyncSession, workspace_id: uuid.UUID, kind: str, value: str
) -> uuid.UUID | None:
    """The profile a userId or anonymousId points at."""
    return await session.scalar(
        select(Identity.profile_id).where(
            Identity.workspace_id == workspace_id, Identity.kind == kind, Identity.value == value
        )
    )


async def identities_of(
    session: AsyncSession, workspace_id: uuid.UUID, profile_id: uuid.UUID
) -> list[Identity]:
    rows = await session.scalars(
        select(Identity)
        .where(Identity.workspace_id == workspace_id, Identity.profile_id == profile_id)
        .order_by(Identity.kind.desc(), Identity.value)  # user_id first
    )
    return list(rows)


async def aggregates_of(
    session: AsyncSession, workspace_id: uuid.UUID, profile_id: uuid.UUID
) -> ProfileAggregates | None:
    return await session.scalar(
        select(ProfileAggregates).where(
            ProfileAggregates.workspace_id == workspace_id, ProfileAggregates.profile_id == profile_id
        )
    )


async def cart_of(session: AsyncSession, workspace_id: uuid.UUID, profile_id: uuid.UUID) -> list[CartItem]:
    rows = await session.scalars(
        select(CartItem)
        .where(
            CartItem.workspace_id == workspace_id, CartItem.profile_id == profile_id, CartItem.quantity > 0
        )
        .order_by(CartItem.added_at.desc(), CartItem.product_id)
    )
    return list(rows)


async def products_viewed(
    session: AsyncSession, workspace_id: uuid.UUID, profile_id: uuid.UUID, limit: int = PRODUCTS_VIEWED_LIMIT
) -> list[ProductView]:
    """The most recently viewed first."""
    rows = await session.scalars(
        select(ProductView)
        .where(ProductView.workspace_id == workspace_id, ProductView.profile_id == profile_id)
        .order_by(ProductView.last_viewed_at.desc(), ProductView.product_id)
        .limit(limit)
    )
    return list(rows)


async def coupons_of(
    session: AsyncSession, workspace_id: uuid.UUID, profile_id: uuid.UUID
) -> list[HeldCoupon]:
    rows = await session.scalars(
        select(HeldCoupon)
        .where(HeldCoupon.workspace_id == workspace_id, HeldCoupon.profile_id == profile_id)
        .order_by(HeldCoupon.issued_at.desc(), HeldCoupon.coupon_id)
    )
    return list(rows)


async def profile_details(
    session: AsyncSession, workspace_id: uuid.UUID, profile_id: uuid.UUID
) -> ProfileDetails | None:
    """Everything the profile API shows about one profile, or None if the workspace has no such one."""
    profile = await find_profile(session, workspace_id, profile_id)
    if profile is None:
        return None
    return ProfileDetails(
        profile=profile,
        identities=await identities_of(session, workspace_id, profile_id),
        aggregates=await aggregates_of(session, workspace_id, profile_id),
        cart=await cart_of(session, workspace_id, profile_id),
        products_viewed=await products_viewed(session, workspace_id, profile_id),
        coupons=await coupons_of(session, workspace_id, profile_id),
    )


async def events_of(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    profile_id: uuid.UUID,
    *,
    before: EventCursor | None,
    limit: int,
) -> list[Event]:
    """A profile's events, newest first (ties broken by id, so paging neither skips nor repeats)."""
    statement = select(Event).where(Event.workspace_id == workspace_id, Event.profile_id == profile_id)
    if before is not None and before.event_id is not None:
        statement = statement.where(
            tuple_(Event.occurred_at, Event.id) < (before.occurred_at, before.event_id)
        )
    elif before is not None:
        statement = statement.where(Event.occurred_at < before.occurred_at)
    rows = await session.scalars(statement.order_by(Event.occurred_at.desc(), Event.id.desc()).limit(limit))
    return list(rows)
