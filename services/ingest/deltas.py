"""A batch's facts reduced to what it adds to each profile's aggregates: one row per profile, per
profile and product (views, cart changes), per profile and coupon. services/ingest/aggregates.py
upserts these rows, adding them to what is stored.

Visits: a visit starts with a shopper's first activity, after 30 minutes without activity, or at
local midnight in the workspace timezone. The batch's activity continues from the profile's last
activity before it (`seen_before`); an activity older than that counts for purchases, carts and
views, but opens no visit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from services.ingest.facts import Fact

SESSION_TIMEOUT = timedelta(minutes=30)
CART_KINDS = frozenset({"cart_add", "cart_remove", "purchase"})


@dataclass
class ProfileDelta:
    """What a batch adds to one profile's visits and purchases."""

    profile_id: uuid.UUID
    new_visits: int = 0
    first_visit: datetime | None = None  # start of the first visit the batch opened
    last_visit: datetime | None = None  # start of the last one
    last_seen: datetime | None = None  # latest activity
    page_views: int = 0  # in the last visit (all the batch's page views if it opened none)
    last_login: datetime | None = None
    purchases: int = 0
    purchase_amount: Decimal = Decimal(0)  # refunds subtracted
    last_purchase: datetime | None = None


@dataclass
class ViewsDelta:
    profile_id: uuid.UUID
    product_id: str
    name: str | None  # the latest given, as category and brand
    category: str | None
    brand: str | None
    views: int
    first_viewed_at: datetime
    last_viewed_at: datetime


@dataclass
class CouponDelta:
    """The latest issue of one coupon to one profile."""

    profile_id: uuid.UUID
    coupon_id: str
    name: str | None
    expires_at: datetime | None
    issued_at: datetime


@dataclass
class CartDelta:
    """One product's cart changes after the profile's last purchase in the batch."""

    profile_id: uuid.UUID
    product_id: str
    quantity: int  # added minus removed
    name: str | None
    price: Decimal | None
    added_at: datetime | None  # the latest add


@dataclass
class CartEmptied:
    """A purchase empties the cart of what was added before it."""

    profile_id: uuid.UUID
    at: datetime


@dataclass
class BatchDeltas:
    profiles: list[ProfileDelta]
    views: list[ViewsDelta]
    coupons: list[CouponDelta]
    emptied: list[CartEmptied]
    cart: list[CartDelta]
    cart_touched: list[uuid.UUID]  # profiles whose cart summary changes


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def activity_profiles(facts: Iterable[Fact]) -> list[uuid.UUID]:
    """The profiles whose last activity before the batch `reduce` needs."""
    return list({f.profile_id for f in facts if f.is_activity})


def reduce(facts: Sequence[Fact], seen_before: Mapping[uuid.UUID, datetime], timezone: str) -> BatchDeltas:
    """`facts` in time order; `seen_before`: each profile's last activity before the batch."""
    cart_facts = [f for f in facts if f.kind in CART_KINDS]
    emptied = _last_purchases(cart_facts)
    return BatchDeltas(
        profiles=_profiles(facts, seen_before, _zone(timezone)),
        views=_views(f for f in facts if f.kind == "product_view"),
        coupons=_coupons(f for f in facts if f.kind == "coupon"),
        emptied=[CartEmptied(p, at) for p, at in emptied.items()],
        cart=_cart(cart_facts, emptied),
        cart_touched=list({f.profile_id for f in cart_facts}),
    )


def _profiles(
    facts: Sequence[Fact], seen_before: Mapping[uuid.UUID, datetime], zone: ZoneInfo
) -> list[ProfileDelta]:
    deltas: dict[uuid.UUID, ProfileDelta] = {}
    # each profile's latest activity so far, and the local midnight after it
    latest: dict[uuid.UUID, tuple[datetime, datetime]] = {
        p: (at, _next_midnight(at, zone)) for p, at in seen_before.items()
    }
    for fact in facts:
        delta = deltas.get(fact.profile_id)
        if delta is None:
            delta = deltas[fact.profile_id] = ProfileDelta(fact.profile_id)
        _add_totals(delta, fact)
        if fact.is_activity:
            _add_activity(delta, fact, seen_before.get(fact.profile_id), latest, zone)
    return list(deltas.values())


def _next_midnight(at: datetime, zone: ZoneInfo) -> datetime:
    """The first instant of the local day after `at`'s, in `at`'s timezone (UTC): a visit ends there.
    Worked out once per visit, where converting each activity to local time cost ~0.4 us."""
    next_day = at.astimezone(zone).date() + timedelta(days=1)
    return datetime.combine(next_day, time(), tzinfo=zone).astimezone(at.tzinfo)


def _add_totals(delta: ProfileDelta, fact: Fact) -> None:
    """Purchases (refunds subtracted) and the last login."""
    if fact.kind == "purchase":
        delta.purchases += 1
        delta.purchase_amount += fact.amount or Decimal(0)
        delta.last_purchase = fact.occurred_at
    elif fact.kind == "refund":
        delta.purchase_amount -= abs(fact.amount or Decimal(0))
    elif fact.kind == "login":
        delta.last_login = fact.occurred_at


def _add_activity(
    delta: ProfileDelta,
    fact: Fact,
    seen_before: datetime | None,
    latest: dict[uuid.UUID, tuple[datetime, datetime]],
    zone: ZoneInfo,
) -> None:
    at = fact.occurred_at
    if seen_before is not None and at < seen_before:
        return  # arrived late: its visit is already counted
    previous = latest.get(fact.profile_id)  # facts come in time order: never after `at`
    if previous is None or at - previous[0] > SESSION_TIMEOUT or at >= previous[1]:
        delta.new_visits += 1
        delta.first_visit = delta.first_visit or at
        delta.last_visit = at
        delta.page_views = 0
        midnight = _next_midnight(at, zone)
    else:
        midnight = previous[1]
    delta.page_views += fact.is_page_view
    delta.last_seen = at
    latest[fact.profile_id] = (at, midnight)


def _views(facts: Iterable[Fact]) -> list[ViewsDelta]:
    views: dict[tuple[uuid.UUID, str], ViewsDelta] = {}
    for f in facts:
        key = (f.profile_id, f.product_id or "")
        seen = views.get(key)
        if seen is None:
            views[key] = ViewsDelta(
                f.profile_id, key[1], f.label, f.category, f.brand, 1, f.occurred_at, f.occurred_at
            )
            continue
        seen.name = f.label or seen.name
        seen.category = f.category or seen.category
        seen.brand = f.brand or seen.brand
        seen.views += 1
        seen.last_viewed_at = f.occurred_at
    return list(views.values())


def _coupons(facts: Iterable[Fact]) -> list[CouponDelta]:
    latest = {
        (f.profile_id, f.product_id): CouponDelta(
            f.profile_id, f.product_id or "", f.label, f.expires_at, f.occurred_at
        )
        for f in facts
    }
    return list(latest.values())


def _last_purchases(cart_facts: Iterable[Fact]) -> dict[uuid.UUID, datetime]:
    return {f.profile_id: f.occurred_at for f in cart_facts if f.kind == "purchase"}


def _cart(cart_facts: Iterable[Fact], emptied: Mapping[uuid.UUID, datetime]) -> list[CartDelta]:
    changes: dict[tuple[uuid.UUID, str], CartDelta] = {}
    for f in cart_facts:
        if f.kind == "purchase":
            continue
        purchase = emptied.get(f.profile_id)
        if purchase is not None and f.occurred_at <= purchase:
            continue  # the purchase took it
        key = (f.profile_id, f.product_id or "")
        change = changes.get(key)
        if change is None:
            change = changes[key] = CartDelta(f.profile_id, key[1], 0, None, None, None)
        quantity = f.quantity or 0
        change.quantity += quantity if f.kind == "cart_add" else -quantity
        change.name = f.label or change.name
        change.price = f.price if f.price is not None else change.price
        if f.kind == "cart_add":
            change.added_at = f.occurred_at
    return list(changes.values())
