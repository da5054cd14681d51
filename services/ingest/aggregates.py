"""Profile aggregates, kept current in the same transaction as the events, with set-based SQL.

What segments need about a shopper, without scanning their events: visits (a visit ends after 30
minutes without activity or at local midnight in the workspace timezone), first / last visit, page
views in the current visit, last login, purchases (count, total with refunds subtracted, last time),
the current cart, products viewed, and coupons held.

A batch is folded in three steps: each event becomes a typed `Fact` (services/ingest/facts.py); the
facts are reduced to what the batch adds to each profile (services/ingest/deltas.py: one row per
profile, per profile and product, per profile and coupon); then one set-based statement per family
upserts those rows for every profile of the batch at once, adding to what is stored. The reduction
runs in Python over facts already in memory and in time order: done in SQL (a window, sorts and
group-bys over every event of the batch) it was a third of Postgres's time per event.

`recompute` rebuilds a profile from all its events (after an identity merge) the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest import deltas
from services.ingest.consents import Consent
from services.ingest.facts import EventLike, fact_of
from services.ingest.repository import json_text
from shared.db import driver_connection

# Each statement reads its rows from ONE JSON text (orjson writes the dataclasses in C; Postgres
# parses it in C); $1 is the workspace. `{rows}` is the parameter's number, given when a statement
# is put together from the families a batch needs. They run on the request's own asyncpg connection
# (same transaction). Every row names a different key, as ON CONFLICT DO UPDATE requires.

# The profiles' last activity before the batch (the visits continue it), where the caller has not
# read it (a recompute; a tracked batch reads it with its identities, repository.claim_and_find):
# one primary-key probe per profile, the LIMIT keeping each apart. `profile_id = ANY($2)` let the
# planner search by the workspace alone and filter, which PostgreSQL 15 did once the workspace
# looked small to its statistics (tests/ingest/test_batch_reads.py).
_SEEN_BEFORE = """
    SELECT a.profile_id, a.last_seen_at
    FROM unnest($2::uuid[]) AS p(id)
    CROSS JOIN LATERAL (
        SELECT profile_id, last_seen_at FROM ingest.profile_aggregates
        WHERE profile_id = p.id AND workspace_id = $1 AND last_seen_at IS NOT NULL
        LIMIT 1
    ) AS a
"""

_PROFILES = """
upserted_aggregates AS (
    INSERT INTO ingest.profile_aggregates AS a (
        profile_id, workspace_id, visit_count, first_visit_at, last_visit_at, last_seen_at,
        session_page_views, last_login_at, purchase_count, purchase_total, last_purchase_at, updated_at
    )
    SELECT r.profile_id, $1, r.new_visits, r.first_visit, r.last_visit, r.last_seen, r.page_views,
           r.last_login, r.purchases, r.purchase_amount, r.last_purchase, now()
    FROM json_to_recordset({rows}::json) AS r(
        profile_id uuid, new_visits integer, first_visit timestamptz, last_visit timestamptz,
        last_seen timestamptz, page_views integer, last_login timestamptz, purchases integer,
        purchase_amount numeric, last_purchase timestamptz)
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

_VIEWS = """
upserted_views AS (
    INSERT INTO ingest.product_views AS v (
        profile_id, product_id, workspace_id, name, category, brand, view_count, first_viewed_at,
        last_viewed_at
    )
    SELECT r.profile_id, r.product_id, $1, r.name, r.category, r.brand, r.views, r.first_viewed_at,
           r.last_viewed_at
    FROM json_to_recordset({rows}::json) AS r(
        profile_id uuid, product_id text, name text, category text, brand text, views integer,
        first_viewed_at timestamptz, last_viewed_at timestamptz)
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
    SELECT r.profile_id, r.coupon_id, $1, r.name, r.expires_at, r.issued_at
    FROM json_to_recordset({rows}::json) AS r(
        profile_id uuid, coupon_id text, name text, expires_at timestamptz, issued_at timestamptz)
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
deleted_cart AS (
    DELETE FROM ingest.cart_items c
    WHERE c.ctid = ANY(ARRAY(
        SELECT i.ctid
        FROM json_to_recordset({rows}::json) AS e(profile_id uuid, at timestamptz)
        CROSS JOIN LATERAL (
            SELECT ctid FROM ingest.cart_items
            WHERE profile_id = e.profile_id AND workspace_id = $1 AND added_at <= e.at
            OFFSET 0  -- a key probe per profile: keeps the planner from joining with the whole table
        ) i))
    RETURNING 1
)"""

# Consents: the latest word on each topic wins.
_CONSENTS = """
upserted_consents AS (
    INSERT INTO ingest.consents AS c (profile_id, topic, workspace_id, granted, given_at, updated_at)
    SELECT DISTINCT ON (profile_id, topic) profile_id, topic, $1, granted, given_at, now()
    FROM json_to_recordset({rows}::json) AS n(
        profile_id uuid, topic text, granted boolean, given_at timestamptz)
    ORDER BY profile_id, topic, given_at DESC
    ON CONFLICT (profile_id, topic) DO UPDATE
    SET granted = excluded.granted, given_at = excluded.given_at, updated_at = now()
    WHERE excluded.given_at >= c.given_at
    RETURNING 1
)"""

_CART_CHANGES = """
INSERT INTO ingest.cart_items AS c (profile_id, product_id, workspace_id, name, quantity, price, added_at)
SELECT r.profile_id, r.product_id, $1, r.name, r.quantity, r.price, coalesce(r.added_at, '-infinity')
FROM json_to_recordset($2::json) AS r(
    profile_id uuid, product_id text, quantity integer, name text, price numeric, added_at timestamptz)
ON CONFLICT (profile_id, product_id) DO UPDATE SET
    quantity = c.quantity + excluded.quantity,
    name = coalesce(excluded.name, c.name),
    price = coalesce(excluded.price, c.price),
    added_at = greatest(c.added_at, excluded.added_at)
"""

# the emptied products go, then each touched profile's cart totals are summed again
_CART_SUMMARY = """
WITH touched AS (
    SELECT profile_id FROM unnest($2::uuid[]) AS t(profile_id)
),
emptied_rows AS (
    DELETE FROM ingest.cart_items c
    WHERE c.ctid = ANY(ARRAY(
        SELECT i.ctid FROM touched t CROSS JOIN LATERAL (
            SELECT ctid FROM ingest.cart_items
            WHERE profile_id = t.profile_id AND workspace_id = $1 AND quantity <= 0
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
        FROM ingest.cart_items c WHERE c.profile_id = t.profile_id AND c.workspace_id = $1
    ) s
)
-- an upsert, so each row is reached through its key (the first statement made every row)
INSERT INTO ingest.profile_aggregates AS a (
    profile_id, workspace_id, cart_item_count, cart_total, cart_last_added_at, updated_at
)
SELECT profile_id, $1, items, total, last_added, now() FROM summary
ON CONFLICT (profile_id) DO UPDATE SET
    cart_item_count = excluded.cart_item_count,
    cart_total = excluded.cart_total,
    cart_last_added_at = excluded.cart_last_added_at
WHERE a.workspace_id = excluded.workspace_id
"""

_OCCURRED_AT = attrgetter("occurred_at")
_FIRST_CACHE: dict[tuple[bool, ...], str] = {}


def _first_statement(families: Sequence[tuple[str, Sequence[Any]]]) -> tuple[str, list[str]]:
    """One statement for every family writing its own table (profiles' totals, product views,
    coupons, carts emptied by a purchase, consents): only those with rows, each rows' JSON text
    one parameter after the workspace."""
    present = tuple(bool(rows) for _, rows in families)
    sql = _FIRST_CACHE.get(present)
    if sql is None:
        used = [cte for (cte, rows) in families if rows]
        ctes = [cte.replace("{rows}", f"${n}") for n, cte in enumerate(used, start=2)]
        sql = _FIRST_CACHE[present] = "WITH " + ",\n".join(ctes) + "\nSELECT 1"
    return sql, [json_text(rows) for _, rows in families if rows]


async def _seen_before(
    connection: Any, workspace_id: uuid.UUID, profile_ids: list[uuid.UUID]
) -> dict[uuid.UUID, datetime]:
    if not profile_ids:
        return {}
    return dict(await connection.fetch(_SEEN_BEFORE, workspace_id, profile_ids))


async def apply(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    timezone: str,
    events: Iterable[EventLike],
    consents: Sequence[Consent] = (),
    *,
    last_seen: Mapping[uuid.UUID, datetime] | None = None,
) -> None:
    """Fold new events into their profiles' aggregates (same transaction as the events), and record
    `consents` (the latest word on each topic wins) in the same round trip. `last_seen`: the
    profiles' last activity before these events where the caller read it already (a profile
    missing from it had none); read here when not given."""
    # the times are all in UTC (drafts and asyncpg give them so): two datetimes of one tzinfo object
    # compare as they are; of two, each is asked for its UTC offset, a Python call (~0.2 us)
    facts = sorted((f for f in map(fact_of, events) if f is not None), key=_OCCURRED_AT)
    if not facts and not consents:
        return
    connection = await driver_connection(session)
    if last_seen is None:
        last_seen = await _seen_before(connection, workspace_id, deltas.activity_profiles(facts))
    batch = deltas.reduce(facts, last_seen, timezone)
    sql, rows = _first_statement(
        [
            (_PROFILES, batch.profiles),
            (_VIEWS, batch.views),
            (_COUPONS, batch.coupons),
            (_CART_EMPTIED, batch.emptied),
            (_CONSENTS, consents),
        ]
    )
    await connection.execute(sql, workspace_id, *rows)
    if batch.cart:
        await connection.execute(_CART_CHANGES, workspace_id, json_text(batch.cart))
    if batch.cart_touched:
        await connection.execute(_CART_SUMMARY, workspace_id, batch.cart_touched)


# Rows reached through their profile's key alone, the workspace checked on the profile (by its
# primary key): given the workspace to search with, the planner read all of it through the
# (workspace_id, product_id) indexes when its statistics lagged (see repository._MERGED).
_FORGET = [
    text(f"""
        DELETE FROM ingest.{table} AS t
        USING unnest(CAST(:profile_ids AS uuid[])) AS p(id)
        WHERE t.profile_id = p.id
          AND (SELECT workspace_id FROM ingest.profiles WHERE id = p.id) = :workspace_id
    """)
    for table in ("profile_aggregates", "cart_items", "product_views", "coupons")
]

# One index search per profile (OFFSET 0 keeps the subquery apart, run for each profile): as a join,
# the planner could feed it by reading the workspace's events, which it did when the workspace looked
# small to statistics that lagged behind it.
_ALL_EVENTS_OF = text("""
    SELECT e.profile_id, e.type, e.name, e.properties, e.occurred_at
    FROM unnest(CAST(:profile_ids AS uuid[])) AS p(id)
    CROSS JOIN LATERAL (
        SELECT profile_id, type, name, properties, occurred_at FROM ingest.events
        WHERE workspace_id = :workspace_id AND profile_id = p.id
        OFFSET 0
    ) AS e
    ORDER BY e.occurred_at
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
