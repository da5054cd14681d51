"""SQL of the ingest tables. Set-based: a batch is a few statements over `unnest(...)` arrays or JSON
texts of rows (one bind parameter per column or family, so no parameter limit however long the
batch), never a loop of INSERTs. A tracked batch's statements run in two server-side functions
(migration 0015), one round trip each. Every statement is scoped by workspace_id, except the
outbox publisher's claim, which serves them all.

A batch reads only the rows of the shoppers it names, however large the workspace: each statement
reaches a table through its key (`id = ANY(...)`, a LIMIT-ed LATERAL probe or a scalar subquery).
`workspace_id = $1` alone is no guide for the planner: in a prepared (generic) plan it guesses a
workspace is 0.5% of the table, and it then joined the batch to the whole workspace's rows.
tests/ingest/test_batch_reads.py holds every statement of a batch to that."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest.dedupe import PROBE_MARGIN
from services.ingest.identity import Key, Plan
from services.ingest.models import DEDUPE_GENERATIONS, PROFILE_ROW_TABLES
from shared.db import driver_connection


@dataclass(frozen=True)
class KnownIdentity:
    kind: str
    value: str
    profile_id: uuid.UUID
    user_id: str | None


# -- plans ---------------------------------------------------------------------------------------


# Plan by key: run statements on their one cached (generic) plan, made to reach rows through
# indexes whatever the statistics say. Generic plans: Postgres otherwise re-plans these long
# statements on every call (a custom plan for each batch's values): over a quarter of its CPU per
# batch went to the planner. No seq scans: every statement reaches its rows by key, but a plan is
# made from the statistics of its day, and those lag a growing table (a new database's first minute,
# before autovacuum's first ANALYZE: plans made on the empty tables scanned cart_items on every
# batch while it grew to thousands of rows). A batch's functions (migration 0015) set them for the
# rest of its transaction; tests/ingest/test_batch_reads.py holds every statement of a batch to them.
_PLAN_BY_KEY = """
    SELECT set_config('plan_cache_mode', 'force_generic_plan', true),
           set_config('enable_seqscan', 'off', true)
"""


# -- a batch's two calls ---------------------------------------------------------------------------
#
# A round trip to Postgres costs ~100 us of CPU on this machine (the client's send and wake-up, the
# backend's), and under load ~0.35 ms of wall time, whatever the statement: a batch is two calls of
# server-side functions (migration 0015), each running several statements in one round trip.
#
# `ingest.lock_claim_and_find` locks the batch's ids (requests sharing a shopper, and so any retried
# message, then run one after the other, and nothing waits in a cycle), then records the messageIds
# (the repeats left out) and finds the identities already known among the ids, with their profile's
# last activity (the visits continue it: services/ingest/deltas.py). In a function each statement
# reads what was committed when it started, so the claim reads after the locks are held.
# - Postgres has room for a few thousand locks across all sessions; a 500 KB batch of tiny messages
#   can name 10,000+ ids, so beyond 1,000 ids they are locked by bucket (coarser, never a 500).
# - A messageId is claimed in the dedupe window's current generation unless the previous one holds
#   it (services/ingest/dedupe.py); the generation is read in the claim's own statement. The previous
#   one is not searched for a message known to be made after the current one started
#   (`dedupe.PROBE_MARGIN`).
# - The claim goes in one lock order for every request, so concurrent retries cannot deadlock.
# - Each id is a key probe. LIMITs and OFFSET 0 keep the subqueries apart from the outer query, so
#   the planner cannot turn them into a join that reads the whole workspace (it did while the tables
#   grew faster than their statistics: every batch read all the workspace's identities and profiles).
_LOCK_CLAIM_AND_FIND = "SELECT * FROM ingest.lock_claim_and_find($1, $2, $3, $4, $5, $6)"


@dataclass
class Claimed:
    repeats: set[str]  # the messageIds seen before (the others are claimed now)
    known: list[KnownIdentity]  # the identities among the keys asked for that exist already
    last_seen: dict[uuid.UUID, datetime]  # the last activity of their profiles, where there was any


class Claim(Protocol):
    """A message to claim (service.py's drafts are)."""

    @property
    def message_id(self) -> str: ...
    @property
    def made_at(self) -> float | None: ...  # when it was made (Unix time), where its clocks tell (dedupe.py)


async def lock_claim_and_find(
    connection: asyncpg.Connection,
    workspace_id: uuid.UUID,
    claims: Sequence[Claim],
    keys: Sequence[Key],
) -> Claimed:
    """Plan the rest of the transaction by key, lock `keys` until commit, record the messageIds (each
    once: `claims` name each once), and look up `keys` and their profiles' last activity: one round
    trip. Only the repeats come back: every claimed messageId was ~300 rows to decode a batch."""
    rows = await connection.fetch(
        _LOCK_CLAIM_AND_FIND,
        workspace_id,
        # one JSON text: asyncpg encodes a text[] at ~0.5 us an element (BENCHMARKS.md, session 18)
        orjson.dumps([(c.message_id, c.made_at) for c in claims]).decode(),
        [k for k, _ in keys],
        [v for _, v in keys],
        DEDUPE_GENERATIONS,
        PROBE_MARGIN.total_seconds(),
    )
    claimed = Claimed(set(), [], {})
    for message_id, kind, value, profile_id, user_id, last_seen_at in rows:
        if message_id is not None:
            claimed.repeats.add(message_id)
            continue
        claimed.known.append(KnownIdentity(kind, value, profile_id, user_id))
        if last_seen_at is not None:
            claimed.last_seen[profile_id] = last_seen_at
    return claimed


@dataclass
class IdentityRows:
    """The identities and events of a batch, as `ingest.store_batch` writes them first: new
    profiles, then their new identities, then the user ids and traits given to known profiles
    (traits merge key by key, the batch's winning), then the events and their outbox row (one for
    them all). Each family is one JSON text of rows, or None for none."""

    received_at: datetime | None = None  # the events' arrival, and the profiles' creation or update
    new_profiles: str | None = None
    new_identities: str | None = None
    updated_profiles: str | None = None
    # ONE JSON text, as the UTF-8 bytes orjson wrote (drafts.py), for a `bytea` parameter read with
    # `convert_from`: orjson writes in C and Postgres parses in C, where arrays of text would cost
    # asyncpg a check and an encode per element, and a text parameter of Korean text is decoded to a
    # `str` and encoded back by asyncpg (~2 us per event's properties and context). Read as jsonb, the
    # properties and the context are parsed once: `json_to_recordset` parsed each again into jsonb
    # and made a hash table per row (~6 us an event more).
    events: bytes | None = None


@dataclass
class AggregateRows:
    """What a batch adds to its profiles' totals, product views and coupons, its consents (the
    latest word wins), and its carts (a purchase's emptying, then the changes, then the touched
    profiles' totals summed again), as `ingest.store_batch` writes them after the events
    (services/ingest/aggregates.py makes them)."""

    profiles: str | None = None
    views: str | None = None
    coupons: str | None = None
    emptied_carts: str | None = None
    consents: str | None = None
    cart_changes: str | None = None
    cart_touched: list[uuid.UUID] | None = None


_STORE_BATCH = "SELECT ingest.store_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"


async def store_batch(
    connection: asyncpg.Connection,
    workspace_id: uuid.UUID,
    identities: IdentityRows | None = None,
    aggregates: AggregateRows | None = None,
    flagged: Collection[uuid.UUID] = (),
) -> None:
    """Write a batch's rows in one round trip (same transaction as the rest of the request), then
    copy the flags of the profiles `flagged` (services/ingest/flags.py) from what was written.
    Every statement is scoped by the workspace and reaches its rows through their keys."""
    i = identities or IdentityRows()
    a = aggregates or AggregateRows()
    if i == IdentityRows() and a == AggregateRows() and not flagged:
        return  # every message was a repeat
    await connection.execute(
        _STORE_BATCH,
        workspace_id,
        i.received_at,
        i.new_profiles,
        i.new_identities,
        i.updated_profiles,
        i.events,
        a.profiles,
        a.views,
        a.coupons,
        a.emptied_carts,
        a.consents,
        a.cart_changes,
        a.cart_touched,
        list(flagged) or None,
    )


def identity_rows(plan: Plan, events: bytes | None, received_at: datetime) -> IdentityRows:
    """The new profiles and identities the plan made, the user ids and traits it gives, the events
    (their JSON array, services/ingest/drafts.py's `placed_json`; None for none)."""
    if not events:
        return IdentityRows()
    rows = IdentityRows(received_at, events=events)
    if plan.new_profiles:
        new = [{"id": p, "user_id": u, "traits": plan.traits.get(p)} for p, u in plan.new_profiles.items()]
        rows.new_profiles = json_text(new)
    if plan.new_identities:
        identities = [{"kind": k, "value": v, "profile_id": p} for (k, v), p in plan.new_identities.items()]
        rows.new_identities = json_text(identities)
    known = (plan.user_ids.keys() | plan.traits.keys()) - plan.new_profiles.keys()
    if known:
        updated = [{"id": p, "user_id": plan.user_ids.get(p), "traits": plan.traits.get(p)} for p in known]
        rows.updated_profiles = json_text(updated)
    return rows


def json_text(rows: Sequence[Any]) -> str:
    """Rows (dicts or dataclasses) as one JSON text for `json_to_recordset`. `default=str` writes
    Decimals and the uuids asyncpg reads back (its own type, which orjson does not know)."""
    return orjson.dumps(rows, default=str).decode()


# A merge moves the source profile's identities, events and traits to the target (the target's traits
# win), then deletes the source. Outbox rows stay as they are: the publisher finds the profiles gone
# and reads their events' profile back (`take_outbox`). Several sources merging into one target in
# the same batch is rare; the traits of only one of them are carried over then.
#
# Each statement starts from `merged`: the (source, target) pairs whose two profiles are this
# workspace's, each checked by its primary key. The rows to move are then reached through their
# profile alone. A workspace condition beside the profile's would let the planner search by the
# workspace, and with statistics that lag a growing workspace (3,000 profiles looked like 6 rows to
# it) it did: it read the whole workspace per merge, and, joining two such reads, its square.
# The events are the exception: their only profile index leads with the workspace; they are searched
# one source at a time, where that index is the planner's best path.
_MERGED = """
    WITH merged AS MATERIALIZED (
        SELECT m.source, m.target
        FROM unnest($2::uuid[], $3::uuid[]) AS m(source, target)
        WHERE (SELECT workspace_id FROM ingest.profiles WHERE id = m.source) = $1::uuid
          AND (SELECT workspace_id FROM ingest.profiles WHERE id = m.target) = $1::uuid
    )
"""


def _after_merged(statement: str) -> str:
    return _MERGED + statement


_MERGE_STATEMENTS = [
    _after_merged(
        """
        UPDATE ingest.identities AS t SET profile_id = merged.target
        FROM merged WHERE t.profile_id = merged.source
    """
    ),
    _after_merged(
        """
        UPDATE ingest.events AS t SET profile_id = moved.target
        FROM (
            SELECT e.id, e.occurred_at, merged.target
            FROM merged CROSS JOIN LATERAL (
                SELECT id, occurred_at FROM ingest.events
                WHERE workspace_id = $1::uuid AND profile_id = merged.source
                OFFSET 0  -- searched per source, never joined to a read of the workspace
            ) AS e
        ) AS moved
        WHERE t.id = moved.id AND t.occurred_at = moved.occurred_at
    """
    ),
    _after_merged(
        """
        UPDATE ingest.profiles AS t SET traits = s.traits || t.traits, updated_at = $4::timestamptz
        FROM merged JOIN ingest.profiles AS s ON s.id = merged.source
        WHERE t.id = merged.target
    """
    ),
    # the merged profile keeps the latest word on each consent topic of either profile
    _after_merged(
        """
        INSERT INTO ingest.consents AS c (profile_id, topic, workspace_id, granted, given_at, updated_at)
        SELECT DISTINCT ON (merged.target, s.topic)
               merged.target, s.topic, s.workspace_id, s.granted, s.given_at, $4::timestamptz
        FROM merged JOIN ingest.consents AS s ON s.profile_id = merged.source
        ORDER BY merged.target, s.topic, s.given_at DESC
        ON CONFLICT (profile_id, topic) DO UPDATE
        SET granted = excluded.granted, given_at = excluded.given_at, updated_at = excluded.updated_at
        WHERE excluded.given_at >= c.given_at
    """
    ),
    # the source's own rows (no foreign key deletes them: models.PROFILE_ROWS), then the source
    *(
        _after_merged(f"DELETE FROM ingest.{table} AS t USING merged WHERE t.profile_id = merged.source")  # noqa: S608
        for table in PROFILE_ROW_TABLES
    ),
    _after_merged("DELETE FROM ingest.profiles AS p USING merged WHERE p.id = merged.source"),
]


async def apply_merges(
    connection: asyncpg.Connection, workspace_id: uuid.UUID, plan: Plan, now: datetime
) -> None:
    """The merges identity resolution decided, after the batch's identities and events are stored
    (`store_batch`)."""
    if not plan.merges:
        return
    scope = (workspace_id, [s for s, _ in plan.merges], [t for _, t in plan.merges], now)
    for statement in _MERGE_STATEMENTS:
        await connection.execute(statement, *scope[: 4 if "$4" in statement else 3])


# -- the outbox ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxEntry:
    """One `EventsRecorded` stream entry's body, built by Postgres (`take_outbox`)."""

    workspace_id: str
    events: int  # how many events the body holds
    body: bytes  # the entry's JSON: {"workspace_id": ..., "events": [...]}


@dataclass(frozen=True)
class TakenOutbox:
    rows: int  # outbox rows taken: fewer than asked for, and the outbox had no more
    entries: list[OutboxEntry]


# The oldest outbox rows, claimed and deleted, and their events written as stream entries' JSON, in
# one statement: the caller publishes them before it commits, so a failed publish rolls the delete
# back and the rows stay. Postgres writes the JSON where Python made an object per event and wrote
# them with orjson: the take cost 5.8-7.2 us an event (client and Postgres), now 4.0-4.3 (a
# throwaway benchmark, 3 rounds). The JSON is put together as text: json_build_object cost ~0.7 us
# an event more. Uuids need no escaping; the type, the name and the time go through to_json.
# Under load (`infra.bench.ingest`, pg_stat_statements, session 19): 5.9 ms a take of ~1,500
# events, ~3.9 us an event of Postgres; 27.9 ms while the profile check below was an anti-join.
#
# - Entries follow the outbox's order: a run of rows of one workspace is cut into entries of at
#   most $2 events; another workspace's row starts a new run.
# - A profile merged into another since its events were stored is gone: those events are read back,
#   each by its primary key, for the profile they have now (a key probe per profile, then per event
#   of a gone profile only). OFFSET 0 keeps the probe a probe: as an anti-join, in a generic plan
#   made while the profiles looked few, it read the whole profile index on every take, for as long
#   as the connection lived (tests/ingest/test_batch_reads.py).
# - The names: only those segments and journeys key on (track, page, screen), as the contract says.
# - Times are written in the transaction's time zone: `take_outbox` sets it to UTC.
_TAKE_OUTBOX = """
    WITH taken AS (
        DELETE FROM ingest.event_outbox AS o
        WHERE o.id = ANY(ARRAY(
            SELECT id FROM ingest.event_outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED))
        RETURNING o.*
    ), starts AS (  -- a row starts a run when its workspace is not the previous row's
        SELECT *, (workspace_id IS DISTINCT FROM lag(workspace_id) OVER (ORDER BY id))::int AS starts_run
        FROM taken
    ), runs AS (
        SELECT *, sum(starts_run) OVER (ORDER BY id) AS run FROM starts
    ), placed AS (  -- with how many events the run's earlier rows hold
        SELECT *, coalesce(sum(cardinality(event_ids)) OVER (
            PARTITION BY run ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
        FROM runs
    ), events AS MATERIALIZED (
        SELECT r.run, (r.before + u.n - 1) / $2 AS entry, r.before + u.n AS k, r.workspace_id,
               u.event_id, u.profile_id, u.type, u.name, u.occurred_at
        FROM placed AS r
        CROSS JOIN LATERAL unnest(r.event_ids, r.profile_ids, r.types, r.names, r.event_times)
            WITH ORDINALITY AS u(event_id, profile_id, type, name, occurred_at, n)
    ), gone AS (
        SELECT s.workspace_id, s.profile_id
        FROM (SELECT DISTINCT workspace_id, profile_id FROM events) AS s
        WHERE NOT EXISTS (
            SELECT 1 FROM ingest.profiles AS p WHERE p.id = s.profile_id AND p.workspace_id = s.workspace_id
            OFFSET 0)  -- a key probe per profile: as an anti-join, it read every profile of the index
    ), profiled AS (  -- the event's profile now: read back only for a gone profile
        SELECT e.*, CASE WHEN g.profile_id IS NULL THEN e.profile_id ELSE (
                   SELECT x.profile_id FROM ingest.events AS x
                   WHERE x.id = e.event_id AND x.occurred_at = e.occurred_at
                     AND x.workspace_id = e.workspace_id
                   LIMIT 1) END AS now_profile_id
        FROM events AS e
        LEFT JOIN gone AS g ON g.profile_id = e.profile_id AND g.workspace_id = e.workspace_id
    )
    SELECT (SELECT count(*) FROM taken)::int, e.workspace_id::text, count(*)::int,
           convert_to('{"workspace_id":"' || e.workspace_id || '","events":[' || string_agg(
               '{"event_id":"' || e.event_id
               || '","profile_id":"' || coalesce(e.now_profile_id, e.profile_id)
               || '","type":' || to_json(e.type)
               || ',"name":' || CASE WHEN e.type IN ('track', 'page', 'screen') AND e.name IS NOT NULL
                                     THEN to_json(e.name)::text ELSE 'null' END
               || ',"occurred_at":' || to_json(e.occurred_at) || '}',
               ',' ORDER BY e.k) || ']}', 'UTF8')
    FROM profiled AS e
    GROUP BY e.run, e.entry, e.workspace_id
    ORDER BY e.run, e.entry
"""
_TAKE_OUTBOX_SETTINGS = _PLAN_BY_KEY.rstrip() + ",\n           set_config('TimeZone', 'UTC', true)\n"


async def take_outbox(session: AsyncSession, limit: int, events_per_entry: int) -> TakenOutbox:
    """The events of the `limit` oldest outbox rows, oldest first, each with the profile it has now,
    as stream entries of at most `events_per_entry` events; the rows are deleted in this transaction
    (so back if it rolls back). Rows another publisher holds are skipped, so publishers can run side
    by side."""
    connection = await driver_connection(session)
    await connection.execute(_TAKE_OUTBOX_SETTINGS)
    rows = await connection.fetch(_TAKE_OUTBOX, limit, events_per_entry)
    entries = [OutboxEntry(workspace_id, events, body) for _, workspace_id, events, body in rows]
    return TakenOutbox(rows[0][0] if rows else 0, entries)
