"""Profile aggregates, kept current in the same transaction as the events, with set-based SQL.

What segments need about a shopper, without scanning their events: visits (a visit ends after 30
minutes without activity or at local midnight in the workspace timezone), first / last visit, page
views in the current visit, last login, purchases (count, total with refunds subtracted, last time),
the current cart, products viewed, and coupons held.

Each batch of new events is reduced in Python to a few typed facts per event (an amount, a product,
a quantity: `Fact`), so the SQL never casts a shopper's free-form JSON; then one statement per
family applies them for every profile of the batch at once. Events older than a profile's last
activity still count for purchases, carts and views, but do not open visits. `recompute` rebuilds a
profile from all its events (after an identity merge) through the same statements.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest.consents import Consent
from services.ingest.repository import json_text
from shared.db import driver_connection

SESSION_TIMEOUT = "30 minutes"

# Segment e-commerce spec names, plus the native ones the issue names
PURCHASE, REFUND = "Order Completed", "Order Refunded"
CART_ADD, CART_REMOVE = "Product Added", "Product Removed"
PRODUCT_VIEW = "Product Viewed"
LOGINS = frozenset({"Signed In", "Signed Up"})
COUPON_ISSUED = "Coupon Issued"
# sent from a store's back office, not by the shopper: they do not make a visit
NOT_SHOPPER_ACTIVITY = frozenset({REFUND, COUPON_ISSUED})


class EventLike(Protocol):
    @property
    def profile_id(self) -> uuid.UUID: ...
    @property
    def type(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def properties(self) -> dict[str, Any]: ...
    @property
    def occurred_at(self) -> datetime: ...


@dataclass
class Fact:
    """What one event means for the aggregates."""

    profile_id: uuid.UUID
    occurred_at: datetime
    is_activity: bool = False
    is_page_view: bool = False
    kind: str | None = None  # login, purchase, refund, cart_add, cart_remove, product_view, coupon
    amount: Decimal | None = None
    product_id: str | None = None
    quantity: int | None = None
    price: Decimal | None = None
    label: str | None = None  # product or coupon name
    category: str | None = None
    brand: str | None = None
    expires_at: datetime | None = None


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value).replace(",", "").strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _quantity(value: Any) -> int:
    number = _decimal(value)
    return max(int(number), 0) if number is not None else 1


def _text(value: Any, limit: int = 255) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)[:limit] or None


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def _product_fact(event: EventLike, kind: str, activity: bool) -> Fact:
    p = event.properties
    return Fact(
        event.profile_id,
        event.occurred_at,
        is_activity=activity,
        kind=kind,
        product_id=_text(p.get("product_id") or p.get("sku") or p.get("id")),
        quantity=_quantity(p.get("quantity")),
        price=_decimal(p.get("price")),
        label=_text(p.get("name")),
        category=_text(p.get("category")),
        brand=_text(p.get("brand")),
    )


def fact_of(event: EventLike) -> Fact | None:
    """The aggregate meaning of one event, or None if it has none (identify, alias, group)."""
    if event.type in ("page", "screen"):
        return Fact(event.profile_id, event.occurred_at, is_activity=True, is_page_view=True)
    if event.type != "track" or not event.name:
        return None
    name, p = event.name, event.properties
    activity = name not in NOT_SHOPPER_ACTIVITY
    if name in (CART_ADD, CART_REMOVE, PRODUCT_VIEW):
        kind = {CART_ADD: "cart_add", CART_REMOVE: "cart_remove", PRODUCT_VIEW: "product_view"}[name]
        fact = _product_fact(event, kind, activity)
        return fact if fact.product_id else Fact(event.profile_id, event.occurred_at, is_activity=activity)
    if name in (PURCHASE, REFUND):
        amount = _decimal(p.get("total")) if p.get("total") is not None else _decimal(p.get("revenue"))
        kind = "purchase" if name == PURCHASE else "refund"
        return Fact(
            event.profile_id, event.occurred_at, is_activity=activity, kind=kind, amount=amount or Decimal(0)
        )
    if name in LOGINS:
        return Fact(event.profile_id, event.occurred_at, is_activity=activity, kind="login")
    if name == COUPON_ISSUED and _text(p.get("coupon_id") or p.get("coupon")):
        return Fact(
            event.profile_id,
            event.occurred_at,
            is_activity=activity,
            kind="coupon",
            product_id=_text(p.get("coupon_id") or p.get("coupon")),
            label=_text(p.get("coupon_name") or p.get("name")),
            expires_at=_timestamp(p.get("expires_at")),
        )
    return Fact(event.profile_id, event.occurred_at, is_activity=activity)


# All statements read the batch as the CTE `facts`, from $1: the `Fact`s as ONE JSON text (orjson
# writes the dataclasses in C; Postgres parses it in C). 13 parameter arrays cost more: asyncpg
# checks and encodes every element in Python, per statement. $2 is the workspace, $3 its timezone.
# They run on the request's own asyncpg connection (same transaction).
_FACTS = """
facts AS (
    SELECT * FROM json_to_recordset($1::json) AS f(
        profile_id uuid, occurred_at timestamptz, is_activity boolean, is_page_view boolean, kind text,
        amount numeric, product_id text, quantity integer, price numeric, label text, category text,
        brand text, expires_at timestamptz)
)"""

_VISITS_AND_TOTALS = f"""
seen AS (  -- a key probe per profile (a scalar subquery is never turned into a workspace-wide join)
    SELECT p.profile_id,
           (SELECT a.last_seen_at FROM ingest.profile_aggregates a
            WHERE a.profile_id = p.profile_id AND a.workspace_id = $2) AS seen_before
    FROM (SELECT DISTINCT profile_id FROM facts) p
),
known AS (
    SELECT f.*, s.seen_before FROM facts f JOIN seen s USING (profile_id)
),
activity AS (
    SELECT profile_id, occurred_at, is_page_view,
           coalesce(lag(occurred_at) OVER w, seen_before) AS previous
    FROM known
    WHERE is_activity AND (seen_before IS NULL OR occurred_at >= seen_before)
    WINDOW w AS (PARTITION BY profile_id ORDER BY occurred_at)
),
visits AS (
    SELECT *, max(occurred_at) FILTER (WHERE starts_visit) OVER (PARTITION BY profile_id) AS current_visit
    FROM (
        SELECT *, previous IS NULL
               OR occurred_at - previous > interval '{SESSION_TIMEOUT}'
               OR (occurred_at AT TIME ZONE $3::text)::date <> (previous AT TIME ZONE $3::text)::date
                  AS starts_visit
        FROM activity
    ) marked
),
visit_totals AS (
    SELECT profile_id,
           count(*) FILTER (WHERE starts_visit) AS new_visits,
           min(occurred_at) FILTER (WHERE starts_visit) AS first_visit,
           max(current_visit) AS last_visit,
           max(occurred_at) AS last_seen,
           count(*) FILTER (WHERE is_page_view AND occurred_at >= coalesce(current_visit, '-infinity'))
               AS page_views
    FROM visits GROUP BY profile_id
),
totals AS (
    SELECT profile_id,
           max(occurred_at) FILTER (WHERE kind = 'login') AS last_login,
           count(*) FILTER (WHERE kind = 'purchase') AS purchases,
           coalesce(sum(amount) FILTER (WHERE kind = 'purchase'), 0)
             - coalesce(sum(abs(amount)) FILTER (WHERE kind = 'refund'), 0) AS purchase_amount,
           max(occurred_at) FILTER (WHERE kind = 'purchase') AS last_purchase
    FROM facts GROUP BY profile_id
),
upserted_aggregates AS (
    INSERT INTO ingest.profile_aggregates AS a (
        profile_id, workspace_id, visit_count, first_visit_at, last_visit_at, last_seen_at,
        session_page_views, last_login_at, purchase_count, purchase_total, last_purchase_at, updated_at
    )
    SELECT t.profile_id, $2, coalesce(v.new_visits, 0), v.first_visit, v.last_visit, v.last_seen,
           coalesce(v.page_views, 0), t.last_login, t.purchases, t.purchase_amount, t.last_purchase, now()
    FROM totals t LEFT JOIN visit_totals v USING (profile_id)
    ON CONFLICT (profile_id) DO UPDATE SET
        visit_count = a.visit_count + excluded.visit_count,
        first_visit_at = least(a.first_visit_at, excluded.first_visit_at),
        last_visit_at = greatest(a.last_visit_at, excluded.last_visit_at),
        last_seen_at = greatest(a.last_seen_at, excluded.last_seen_at),
        session_page_views = CASE WHEN excluded.last_visit_at IS NOT NULL THEN excluded.session_page_views
                                  ELSE a.session_page_views + excluded.session_page_views END,
        last_login_at = greatest(a.last_login_at, excluded.last_login_at),
        purchase_count = a.purchase_count + excluded.purchase_count,
        purchase_total = a.purchase_total + excluded.purchase_total,
        last_purchase_at = greatest(a.last_purchase_at, excluded.last_purchase_at),
        updated_at = now()
    RETURNING 1
)"""

_PRODUCT_VIEWS = """
upserted_views AS (
    INSERT INTO ingest.product_views AS v (
        profile_id, product_id, workspace_id, name, category, brand, view_count, first_viewed_at,
        last_viewed_at
    )
    SELECT profile_id, product_id, $2,
           (array_agg(label ORDER BY occurred_at DESC) FILTER (WHERE label IS NOT NULL))[1],
           (array_agg(category ORDER BY occurred_at DESC) FILTER (WHERE category IS NOT NULL))[1],
           (array_agg(brand ORDER BY occurred_at DESC) FILTER (WHERE brand IS NOT NULL))[1],
           count(*), min(occurred_at), max(occurred_at)
    FROM facts WHERE kind = 'product_view'
    GROUP BY profile_id, product_id
    ON CONFLICT (profile_id, product_id) DO UPDATE SET
        name = coalesce(excluded.name, v.name),
        category = coalesce(excluded.category, v.category),
        brand = coalesce(excluded.brand, v.brand),
        view_count = v.view_count + excluded.view_count,
        first_viewed_at = least(v.first_viewed_at, excluded.first_viewed_at),
        last_viewed_at = greatest(v.last_viewed_at, excluded.last_viewed_at)
    RETURNING 1
)"""

_COUPONS = """
upserted_coupons AS (
    INSERT INTO ingest.coupons AS c (profile_id, coupon_id, workspace_id, name, expires_at, issued_at)
    SELECT DISTINCT ON (profile_id, product_id)
           profile_id, product_id, $2, label, expires_at, occurred_at
    FROM facts WHERE kind = 'coupon'
    ORDER BY profile_id, product_id, occurred_at DESC
    ON CONFLICT (profile_id, coupon_id) DO UPDATE SET
        name = coalesce(excluded.name, c.name),
        expires_at = coalesce(excluded.expires_at, c.expires_at),
        issued_at = greatest(c.issued_at, excluded.issued_at)
    RETURNING 1
)"""

# A purchase empties the cart: what was in it before the purchase goes. The cart changes run as
# the next statement, so they see this delete (a data-modifying CTE and its siblings share one
# snapshot, so the changes cannot join this statement).
_CART_EMPTIED = """
emptied AS (
    SELECT profile_id, max(occurred_at) AS at FROM facts WHERE kind = 'purchase' GROUP BY profile_id
),
deleted_cart AS (
    DELETE FROM ingest.cart_items c
    WHERE c.ctid = ANY(ARRAY(
        SELECT i.ctid FROM emptied e CROSS JOIN LATERAL (
            SELECT ctid FROM ingest.cart_items
            WHERE profile_id = e.profile_id AND workspace_id = $2 AND added_at <= e.at
            OFFSET 0  -- a key probe per profile: keeps the planner from joining with the whole table
        ) i))
    RETURNING 1
)"""

# Then only the cart changes after a profile's last purchase in the batch count.
_CART_CHANGES = f"""
WITH {_FACTS},
emptied AS (
    SELECT profile_id, max(occurred_at) AS at FROM facts WHERE kind = 'purchase' GROUP BY profile_id
),
changes AS (
    SELECT f.profile_id, f.product_id,
           sum(CASE WHEN f.kind = 'cart_add' THEN f.quantity ELSE -f.quantity END) AS delta,
           (array_agg(f.label ORDER BY f.occurred_at DESC) FILTER (WHERE f.label IS NOT NULL))[1] AS label,
           (array_agg(f.price ORDER BY f.occurred_at DESC) FILTER (WHERE f.price IS NOT NULL))[1] AS price,
           max(f.occurred_at) FILTER (WHERE f.kind = 'cart_add') AS added_at
    FROM facts f LEFT JOIN emptied e USING (profile_id)
    WHERE f.kind IN ('cart_add', 'cart_remove') AND f.occurred_at > coalesce(e.at, '-infinity')
    GROUP BY f.profile_id, f.product_id
)
INSERT INTO ingest.cart_items AS c (profile_id, product_id, workspace_id, name, quantity, price, added_at)
SELECT profile_id, product_id, $2, label, delta, price, coalesce(added_at, '-infinity')
FROM changes
ON CONFLICT (profile_id, product_id) DO UPDATE SET
    quantity = c.quantity + excluded.quantity,
    name = coalesce(excluded.name, c.name),
    price = coalesce(excluded.price, c.price),
    added_at = greatest(c.added_at, excluded.added_at)
"""

_CART_SUMMARY = f"""
WITH {_FACTS},
touched AS (
    SELECT DISTINCT profile_id FROM facts WHERE kind IN ('cart_add', 'cart_remove', 'purchase')
),
emptied_rows AS (
    DELETE FROM ingest.cart_items c
    WHERE c.ctid = ANY(ARRAY(
        SELECT i.ctid FROM touched t CROSS JOIN LATERAL (
            SELECT ctid FROM ingest.cart_items
            WHERE profile_id = t.profile_id AND workspace_id = $2 AND quantity <= 0
            OFFSET 0  -- a key probe per profile, as above
        ) i))
    RETURNING c.profile_id
),
summary AS (  -- LATERAL with an aggregate: one key probe of the cart per profile
    SELECT t.profile_id, s.*
    FROM touched t CROSS JOIN LATERAL (
        SELECT coalesce(sum(c.quantity) FILTER (WHERE c.quantity > 0), 0) AS items,
               coalesce(sum(c.quantity * c.price) FILTER (WHERE c.quantity > 0), 0) AS total,
               max(c.added_at) FILTER (WHERE c.quantity > 0 AND c.added_at > '-infinity') AS last_added
        FROM ingest.cart_items c WHERE c.profile_id = t.profile_id AND c.workspace_id = $2
    ) s
)
-- an upsert, so each row is reached through its key (the first statement made every row)
INSERT INTO ingest.profile_aggregates AS a (
    profile_id, workspace_id, cart_item_count, cart_total, cart_last_added_at, updated_at
)
SELECT profile_id, $2, items, total, last_added, now() FROM summary
ON CONFLICT (profile_id) DO UPDATE SET
    cart_item_count = excluded.cart_item_count,
    cart_total = excluded.cart_total,
    cart_last_added_at = excluded.cart_last_added_at
WHERE a.workspace_id = excluded.workspace_id
"""

# Consents (latest word wins) ride along in the first statement: $4, the `Consent`s as JSON.
_CONSENTS = """
upserted_consents AS (
    INSERT INTO ingest.consents AS c (profile_id, topic, workspace_id, granted, given_at, updated_at)
    SELECT DISTINCT ON (profile_id, topic) profile_id, topic, $2, granted, given_at, now()
    FROM json_to_recordset($4::json) AS n(profile_id uuid, topic text, granted boolean, given_at timestamptz)
    ORDER BY profile_id, topic, given_at DESC
    ON CONFLICT (profile_id, topic) DO UPDATE
    SET granted = excluded.granted, given_at = excluded.given_at, updated_at = now()
    WHERE excluded.given_at >= c.given_at
    RETURNING 1
)"""

_FAMILIES = {
    "product_view": _PRODUCT_VIEWS,
    "coupon": _COUPONS,
    "purchase": _CART_EMPTIED,
}
_FIRST_CACHE: dict[tuple[frozenset[str], bool], str] = {}
_CART_KINDS = frozenset({"cart_add", "cart_remove", "purchase"})


def _first_statement(kinds: frozenset[str], with_consents: bool) -> str:
    """One statement for every family touching its own table: visits and totals, product views,
    coupons, the cart cleared by a purchase, consents. Only the families the batch needs are in it."""
    key = (frozenset(kinds & _FAMILIES.keys()), with_consents)
    sql = _FIRST_CACHE.get(key)
    if sql is None:
        parts = [_FACTS, _VISITS_AND_TOTALS]
        parts += [cte for kind, cte in _FAMILIES.items() if kind in kinds]
        if with_consents:
            parts.append(_CONSENTS)
        sql = _FIRST_CACHE[key] = "WITH " + ",\n".join(parts) + "\nSELECT 1"
    return sql


async def apply(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    timezone: str,
    events: Iterable[EventLike],
    consents: Sequence[Consent] = (),
) -> None:
    """Fold new events into their profiles' aggregates (same transaction as the events), and record
    `consents` (the latest word on each topic wins) in the same round trip."""
    facts = sorted((f for f in map(fact_of, events) if f is not None), key=lambda f: f.occurred_at)
    if not facts and not consents:
        return
    kinds = frozenset(f.kind for f in facts if f.kind is not None)
    first_args: list[Any] = [json_text(facts), workspace_id, timezone]
    if consents:
        first_args.append(json_text(consents))
    connection = await driver_connection(session)
    await connection.execute(_first_statement(kinds, bool(consents)), *first_args)
    if not kinds & _CART_KINDS:
        return
    # the cart statements need only the cart's facts (a tenth of a typical batch)
    cart_args = [json_text([f for f in facts if f.kind in _CART_KINDS]), workspace_id]
    if kinds & {"cart_add", "cart_remove"}:
        await connection.execute(_CART_CHANGES, *cart_args)
    await connection.execute(_CART_SUMMARY, *cart_args)


_FORGET = [
    text(f"DELETE FROM ingest.{table} WHERE workspace_id = :workspace_id AND profile_id = ANY(:profile_ids)")
    for table in ("profile_aggregates", "cart_items", "product_views", "coupons")
]

_ALL_EVENTS_OF = text("""
    SELECT profile_id, type, name, properties, occurred_at FROM ingest.events
    WHERE workspace_id = :workspace_id AND profile_id = ANY(:profile_ids)
    ORDER BY occurred_at
""")


@dataclass(frozen=True)
class _StoredEvent:
    profile_id: uuid.UUID
    type: str
    name: str | None
    properties: dict[str, Any]
    occurred_at: datetime


async def recompute(
    session: AsyncSession, workspace_id: uuid.UUID, timezone: str, profile_ids: Sequence[uuid.UUID]
) -> None:
    """Rebuild profiles' aggregates from all their events (after an identity merge moved events)."""
    if not profile_ids:
        return
    scope = {"workspace_id": workspace_id, "profile_ids": list(profile_ids)}
    for statement in _FORGET:
        await session.execute(statement, scope)
    rows = await session.execute(_ALL_EVENTS_OF, scope)
    await apply(session, workspace_id, timezone, [_StoredEvent(*row) for row in rows])
