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
# - Each request's messageIds are claimed with a plain insert, one descent of the index an id, where
#   ON CONFLICT takes two; a request carrying a repeat fails its own insert and is claimed again with
#   ON CONFLICT (migration 0020). Small requests share a part: at most `MAX_CLAIM_PARTS` a batch.
# - Each part is claimed in key order; retries of a message lock its shopper's ids first, so they
#   cannot deadlock.
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


# Each part is a subtransaction in the claim (migration 0020): past 64 that wrote, other sessions'
# snapshots would overflow their cache of them.
MAX_CLAIM_PARTS = 32


def claim_parts(requests: Sequence[Sequence[Claim]]) -> list[list[Claim]]:
    """The requests' claims in parts of whole requests (a resent batch's repeats send only its own
    part to ON CONFLICT): one a request, or past MAX_CLAIM_PARTS requests, consecutive ones together."""
    requests = [r for r in requests if r]
    if len(requests) <= MAX_CLAIM_PARTS:
        return [list(r) for r in requests]
    # every part but the last holds at least `size`: at most MAX_CLAIM_PARTS - 1 of them
    size = -(-sum(len(r) for r in requests) // (MAX_CLAIM_PARTS - 1))
    parts: list[list[Claim]] = [[]]
    for request in requests:
        if len(parts[-1]) >= size:
            parts.append([])
        parts[-1].extend(request)
    return parts


async def lock_claim_and_find(
    connection: asyncpg.Connection,
    workspace_id: uuid.UUID,
    requests: Sequence[Sequence[Claim]],
    keys: Sequence[Key],
) -> Claimed:
    """Plan the rest of the transaction by key, lock `keys` until commit, record the messageIds of
    `requests` (each once across them all), and look up `keys` and their profiles' last activity: one
    round trip. Only the repeats come back: every claimed messageId was ~300 rows to decode a batch."""
    parts = [[(c.message_id, c.made_at) for c in part] for part in claim_parts(requests)]
    rows = await connection.fetch(
        _LOCK_CLAIM_AND_FIND,
        workspace_id,
        # one JSON text: asyncpg encodes a text[] at ~0.5 us an element (BENCHMARKS.md, session 18)
        orjson.dumps(parts).decode(),
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
    # The events as the stream tells them, their outbox rows' bodies (`take_outbox`): JSON arrays of
    # at most EVENTS_PER_ENTRY events each, how many each holds, and the events' profiles (each once)
    outbox: list[bytes] | None = None
    outbox_events: list[int] | None = None
    outbox_profiles: list[uuid.UUID] | None = None


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


_STORE_BATCH = (
    "SELECT ingest.store_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
)


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
        i.outbox,
        i.outbox_events,
        i.outbox_profiles,
        a.profiles,
        a.views,
        a.coupons,
        a.emptied_carts,
        a.consents,
        a.cart_changes,
        a.cart_touched,
        list(flagged) or None,
    )


def identity_rows(
    plan: Plan,
    events: bytes | None,
    outbox: Sequence[tuple[bytes, int]],
    profiles: Collection[uuid.UUID],
    received_at: datetime,
) -> IdentityRows:
    """The new profiles and identities the plan made, the user ids and traits it gives, the events
    (their JSON array: services/ingest/drafts.py's `placed`; None for none), and their outbox rows
    (the events as the stream tells them, a JSON array of at most EVENTS_PER_ENTRY, and how many),
    whose events are of `profiles`."""
    if not events:
        return IdentityRows()
    rows = IdentityRows(
        received_at,
        events=events,
        outbox=[body for body, _ in outbox],
        outbox_events=[count for _, count in outbox],
        outbox_profiles=list(profiles),
    )
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


# Events an outbox row holds at most, and a stream entry unless an older row held more (migration 0019):
# an entry per event cost more than the rest of publishing (packing, Redis); a few hundred keep an
# entry ~100 KB and a consumer's read of a round moderate.
EVENTS_PER_ENTRY = 500


@dataclass(frozen=True)
class OutboxEntry:
    """One `EventsRecorded` stream entry's body (`take_outbox`)."""

    workspace_id: str
    events: int  # how many events the body holds
    body: bytes  # the entry's JSON: {"workspace_id": ..., "events": [...]}


@dataclass(frozen=True)
class TakenOutbox:
    rows: int  # outbox rows taken: fewer than asked for, and the outbox had no more
    entries: list[OutboxEntry]


# The oldest outbox rows, claimed and deleted, with their bodies (the events as the stream tells them,
# written as the events were stored: services/ingest/drafts.py) and which of their profiles are gone:
# the caller publishes them before it commits, so a failed publish rolls the delete back and the rows
# stay. Building the bodies here from arrays of the events' fields cost Postgres ~3.9 us an event
# under load (BENCHMARKS.md, session 19); the take is now ~0.5 ms a call (session 20).
# A profile merged into another since its events were stored is gone (a key probe per profile:
# OFFSET 0 keeps the probe a probe; as an anti-join, in a generic plan made while the profiles looked
# few, it read the whole profile index on every take, for as long as the connection lived:
# tests/ingest/test_batch_reads.py). Those events are read back for the profile they have now
# (`_NOW_PROFILES`).
_TAKE_OUTBOX = """
    WITH taken AS (
        DELETE FROM ingest.event_outbox AS o
        WHERE o.id = ANY(ARRAY(
            SELECT id FROM ingest.event_outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED))
        RETURNING o.id, o.workspace_id, o.events, o.body, o.profile_ids
    )
    SELECT t.workspace_id, t.events, t.body, ARRAY(
        SELECT p.id FROM unnest(t.profile_ids) AS p(id)
        WHERE NOT EXISTS (
            SELECT 1 FROM ingest.profiles WHERE id = p.id AND workspace_id = t.workspace_id
            OFFSET 0)) AS gone
    FROM taken AS t
    ORDER BY t.id
"""

# The profile some events have now, each read by its primary key (id, occurred_at)
_NOW_PROFILES = """
    SELECT e.id, x.profile_id::text
    FROM unnest($2::text[], $3::text[]) AS e(id, occurred_at)
    CROSS JOIN LATERAL (
        SELECT profile_id FROM ingest.events
        WHERE id = e.id::uuid AND occurred_at = e.occurred_at::timestamptz AND workspace_id = $1
        LIMIT 1
    ) AS x
"""


async def _with_profiles_now(
    connection: asyncpg.Connection, workspace_id: uuid.UUID, body: bytes, gone: list[uuid.UUID]
) -> bytes:
    """`body`'s events with the profile they have now, where theirs is `gone` (merged away). An event
    not found keeps the profile it had."""
    events = orjson.loads(body)
    gone_ids = {str(p) for p in gone}
    moved = [e for e in events if e["profile_id"] in gone_ids]
    rows = await connection.fetch(
        _NOW_PROFILES, workspace_id, [e["event_id"] for e in moved], [e["occurred_at"] for e in moved]
    )
    now = dict(rows)
    for event in moved:
        event["profile_id"] = now.get(event["event_id"], event["profile_id"])
    return orjson.dumps(events)


def _entries(rows: Sequence[tuple[str, int, bytes]], events_per_entry: int) -> list[OutboxEntry]:
    """The rows' events (workspace, how many, JSON array) as stream entries, in the rows' order:
    consecutive rows of one workspace share an entry while it holds at most `events_per_entry`."""
    runs: list[list[tuple[str, int, bytes]]] = []
    for row in rows:
        run = runs[-1] if runs else None
        if run is None or run[0][0] != row[0] or sum(n for _, n, _ in run) + row[1] > events_per_entry:
            runs.append([row])
        else:
            run.append(row)
    return [_entry(run) for run in runs]


def _entry(run: list[tuple[str, int, bytes]]) -> OutboxEntry:
    workspace_id = run[0][0]
    events = b",".join(body[1:-1] for _, _, body in run)  # the arrays' elements, in one array
    body = b'{"workspace_id":"%s","events":[%s]}' % (workspace_id.encode(), events)
    return OutboxEntry(workspace_id, sum(n for _, n, _ in run), body)


async def take_outbox(session: AsyncSession, limit: int, events_per_entry: int) -> TakenOutbox:
    """The events of the `limit` oldest outbox rows, oldest first, each with the profile it has now,
    as stream entries of at most `events_per_entry` events (an older row of more is an entry of its
    own); the rows are deleted in this transaction (so back if it rolls back). Rows another publisher
    holds are skipped, so publishers can run side by side."""
    connection = await driver_connection(session)
    await connection.execute(_PLAN_BY_KEY)
    rows = []
    for workspace_id, events, body, gone in await connection.fetch(_TAKE_OUTBOX, limit):
        if gone:
            body = await _with_profiles_now(connection, workspace_id, body, gone)
        rows.append((str(workspace_id), events, body))
    return TakenOutbox(len(rows), _entries(rows, events_per_entry))
