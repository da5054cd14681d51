"""Profile aggregates, kept current in the same transaction as the events, with set-based SQL.

What segments need about a shopper, without scanning their events: visits (a visit ends after 30
minutes without activity or at local midnight in the workspace timezone), first / last visit, page
views in the current visit, last login, purchases (count, total with refunds subtracted, last time),
the current cart, products viewed, and coupons held.

A batch is folded in three steps: each event becomes a typed `Fact` (services/ingest/facts.py); the
facts are reduced to what the batch adds to each profile (services/ingest/deltas.py: one row per
profile, per profile and product, per profile and coupon); then one set-based statement per family
upserts those rows for every profile of the batch at once, adding to what is stored (in
`ingest.store_batch`, migration 0015: the same round trip as the batch's events). The reduction
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

import asyncpg

from services.ingest import deltas
from services.ingest.consents import Consent
from services.ingest.facts import EventLike, Fact, fact_of_event
from services.ingest.repository import AggregateRows, json_text, store_batch

# The profiles' last activity before the batch (the visits continue it), where the caller has not
# read it (a recompute; a tracked batch reads it with its identities, repository.lock_claim_and_find):
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

_OCCURRED_AT = attrgetter("occurred_at")


def _json_or_none(rows: Sequence[Any]) -> str | None:
    return json_text(rows) if rows else None


def rows_of(
    facts: Iterable[Fact],
    consents: Sequence[Consent],
    last_seen: Mapping[uuid.UUID, datetime],
    timezone: str,
) -> AggregateRows:
    """What a batch's `facts` (of its events, any order) add to their profiles' aggregates, and
    `consents`, as `repository.store_batch` takes them (set-based upserts, adding to what is stored).
    `last_seen`: the profiles' last activity before these events (a profile missing from it had none)."""
    return _rows_of_facts(_in_time_order(facts), consents, last_seen, timezone)


def _in_time_order(facts: Iterable[Fact]) -> list[Fact]:
    # the times are all in UTC (drafts and asyncpg give them so): two datetimes of one tzinfo object
    # compare as they are; of two, each is asked for its UTC offset, a Python call (~0.2 us)
    return sorted(facts, key=_OCCURRED_AT)


def _facts_in_time_order(events: Iterable[EventLike]) -> list[Fact]:
    return _in_time_order(f for f in map(fact_of_event, events) if f is not None)


def _rows_of_facts(
    facts: Sequence[Fact], consents: Sequence[Consent], last_seen: Mapping[uuid.UUID, datetime], timezone: str
) -> AggregateRows:
    batch = deltas.reduce(facts, last_seen, timezone)
    return AggregateRows(
        profiles=_json_or_none(batch.profiles),
        views=_json_or_none(batch.views),
        coupons=_json_or_none(batch.coupons),
        emptied_carts=_json_or_none(batch.emptied),
        consents=_json_or_none(consents),
        cart_changes=_json_or_none(batch.cart),
        cart_touched=batch.cart_touched or None,
    )


async def _seen_before(
    connection: asyncpg.Connection, workspace_id: uuid.UUID, profile_ids: list[uuid.UUID]
) -> dict[uuid.UUID, datetime]:
    if not profile_ids:
        return {}
    return dict(await connection.fetch(_SEEN_BEFORE, workspace_id, profile_ids))


async def apply(
    connection: asyncpg.Connection, workspace_id: uuid.UUID, timezone: str, events: Sequence[EventLike]
) -> None:
    """Fold events into their profiles' aggregates (same transaction as the events), reading their
    profiles' last activity first."""
    facts = _facts_in_time_order(events)
    if not facts:
        return
    last_seen = await _seen_before(connection, workspace_id, deltas.activity_profiles(facts))
    await store_batch(connection, workspace_id, aggregates=_rows_of_facts(facts, (), last_seen, timezone))


# Rows reached through their profile's key alone, the workspace checked on the profile (by its
# primary key): given the workspace to search with, the planner read all of it through the
# (workspace_id, product_id) indexes when its statistics lagged (see repository._MERGED).
_FORGET = [
    f"""
        DELETE FROM ingest.{table} AS t
        USING unnest($2::uuid[]) AS p(id)
        WHERE t.profile_id = p.id
          AND (SELECT workspace_id FROM ingest.profiles WHERE id = p.id) = $1::uuid
    """
    for table in ("profile_aggregates", "cart_items", "product_views", "coupons")
]

# One index search per profile (OFFSET 0 keeps the subquery apart, run for each profile): as a join,
# the planner could feed it by reading the workspace's events, which it did when the workspace looked
# small to statistics that lagged behind it.
_ALL_EVENTS_OF = """
    SELECT e.profile_id, e.type, e.name, e.properties, e.occurred_at
    FROM unnest($2::uuid[]) AS p(id)
    CROSS JOIN LATERAL (
        SELECT profile_id, type, name, properties, occurred_at FROM ingest.events
        WHERE workspace_id = $1::uuid AND profile_id = p.id
        OFFSET 0
    ) AS e
    ORDER BY e.occurred_at
"""


@dataclass(frozen=True)
class _StoredEvent:
    profile_id: uuid.UUID
    type: str
    name: str | None
    properties: dict[str, Any]
    occurred_at: datetime


async def recompute(
    connection: asyncpg.Connection,
    workspace_id: uuid.UUID,
    timezone: str,
    profile_ids: Sequence[uuid.UUID],
) -> None:
    """Rebuild profiles' aggregates from all their events (after an identity merge moved events)."""
    if not profile_ids:
        return
    scope = (workspace_id, list(profile_ids))
    for statement in _FORGET:
        await connection.execute(statement, *scope)
    rows = await connection.fetch(_ALL_EVENTS_OF, *scope)
    await apply(connection, workspace_id, timezone, [_StoredEvent(*row) for row in rows])
