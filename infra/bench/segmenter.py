"""Segmenter benchmark: estimate, full materialization and live re-evaluation of the playbook segments
over a generated store, each beside the best hand-written SQL for the same question.

    .venv/bin/python -m infra.bench.segmenter [--profiles 1000000] [--events 10000000] [--keep]

It starts its own servers (the embedded default under .dasi/bench, or DASI_DATABASE_URL), makes a
fresh database, migrates it, and generates one workspace with set-based SQL (generate_series)
straight into ingest's tables: profiles (70% members), events over 90 days (~60% page views, 10% of
them the promo page; product views, cart adds, orders, sign-ins; a few heavy shoppers do much of it),
profile aggregates and consents derived from those events. Then, per playbook segment:

- estimate: the segmenter's compiled count (service.estimate) vs a hand-written count;
- full materialization, first run (everyone enters) and second run after ~1% of the shoppers changed
  (the entered / exited diff): the segmenter's refresh vs the same one-statement diff over a
  hand-written member query, on a segment of its own;
- live re-evaluation of one shopper (the compiled query restricted to one profile, and its diff)
  vs the hand-written query restricted the same way.

Targets: estimate < 500 ms, full materialization < 10 s, live re-evaluation of one user < 20 ms.
"""

# SQL in this script is built from its own constants and numbers, never from input
# ruff: noqa: S608

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from infra import migrate, stack
from services.ingest import flags
from services.segmenter import materialize, repository, service
from services.segmenter.definition import Definition
from services.segmenter.models import Segment
from services.segmenter.schemas import CART_ABANDONERS, LOYAL_BIG_SPENDERS, PROMO_PAGE_TODAY
from shared.auth import WorkspaceContext
from shared.clock import FrozenClock, start_of_local_day
from shared.db import create_engine, create_sessionmaker, session_scope
from shared.settings import Settings
from shared.workspaces import create_workspace

NOW = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # 14:00 in Seoul
TZ = "Asia/Seoul"
DAYS = 90
PROMO = "https://dasi.shop/promo"
LOGIN_BEFORE = (NOW - timedelta(days=30)).date()
LIVE_REPEAT = 20  # transactions timed for the live re-evaluation of the workspace's segments

SEGMENTS: dict[str, dict[str, Any]] = {
    "cart abandoners, no purchase in 7 days": CART_ABANDONERS,
    "promo page 3+ today, no purchase in 7 days": PROMO_PAGE_TODAY,
    "10+ visits and 300,000+ KRW": LOYAL_BIG_SPENDERS,
    f"last login before {LOGIN_BEFORE}": {
        "include": {"all": [{"type": "last_login", "before": LOGIN_BEFORE.isoformat()}, {"type": "member"}]},
        "exclude": [{"type": "marketing_consent", "channel": "sms", "granted": False}],
    },
}


def _hand_sql(now: datetime) -> dict[str, tuple[str, dict[str, Any]]]:
    """The best member query a person would write for each question (`profile_id`s; :ws, :only)."""
    week = start_of_local_day(now, TZ, 7)
    today = start_of_local_day(now, TZ, 0)
    before = datetime.combine(LOGIN_BEFORE, datetime.min.time()).replace(tzinfo=UTC) - timedelta(hours=9)
    only = "AND (CAST(:only AS uuid[]) IS NULL OR {col} = ANY(CAST(:only AS uuid[])))"
    return {
        "cart abandoners, no purchase in 7 days": (
            "SELECT a.profile_id FROM ingest.profile_aggregates a WHERE a.workspace_id = :ws "
            "AND a.cart_item_count >= 1 AND (a.last_purchase_at IS NULL OR a.last_purchase_at < :week) "
            + only.format(col="a.profile_id"),
            {"week": week},
        ),
        "promo page 3+ today, no purchase in 7 days": (
            "SELECT e.profile_id FROM ingest.events e "
            "LEFT JOIN ingest.profile_aggregates a ON a.profile_id = e.profile_id "
            "WHERE e.workspace_id = :ws AND e.occurred_at >= :today AND e.type = 'page' "
            "AND starts_with(e.properties->>'url', :promo) "
            + only.format(col="e.profile_id")
            + " AND (a.last_purchase_at IS NULL OR a.last_purchase_at < :week) "
            "GROUP BY e.profile_id HAVING count(*) >= 3",
            {"week": week, "today": today, "promo": PROMO},
        ),
        "10+ visits and 300,000+ KRW": (
            "SELECT a.profile_id FROM ingest.profile_aggregates a WHERE a.workspace_id = :ws "
            "AND a.visit_count >= 10 AND a.purchase_total >= 300000 " + only.format(col="a.profile_id"),
            {},
        ),
        f"last login before {LOGIN_BEFORE}": (
            "SELECT a.profile_id FROM ingest.profile_aggregates a "
            "WHERE a.workspace_id = :ws AND a.last_login_at < :before AND a.is_member AND a.consent_sms "
            + only.format(col="a.profile_id"),
            {"before": before},
        ),
    }


# --- generating the store ----------------------------------------------------------------------

PROFILE_ID = "md5(:ws_text || '-' || {n})::uuid"


def _generation(profiles: int, events: int) -> list[tuple[str, str]]:
    """(label, SQL) steps; every step is one set-based statement."""
    pid = PROFILE_ID.format(n="g")
    # a shopper number skewed towards heavy shoppers: a few do much of the activity
    skewed = f"(1 + floor(power(random(), 2.2) * {profiles}))::int"
    return [
        (
            "profiles",
            f"""INSERT INTO ingest.profiles (id, workspace_id, user_id, traits, created_at, updated_at)
            SELECT {pid}, :ws, 'member-' || g,
                   jsonb_build_object('member', g % 10 < 7, 'gender', CASE WHEN g % 2 = 0 THEN 'female'
                   ELSE 'male' END, 'phone', '010' || lpad((g % 100000000)::text, 8, '0')),
                   :now - interval '120 days', :now
            FROM generate_series(1, {profiles}) AS g""",
        ),
        (
            "events",
            f"""INSERT INTO ingest.events (id, occurred_at, workspace_id, profile_id, message_id, type, name,
                                          properties, received_at)
            SELECT gen_random_uuid(), t.at, :ws, {PROFILE_ID.format(n="t.shopper")}, 'b-' || t.g,
                   CASE WHEN t.r < 0.60 THEN 'page' ELSE 'track' END,
                   CASE WHEN t.r < 0.60 THEN NULL WHEN t.r < 0.75 THEN 'Product Viewed'
                        WHEN t.r < 0.85 THEN 'Product Added' WHEN t.r < 0.88 THEN 'Order Completed'
                        WHEN t.r < 0.90 THEN 'Signed In' ELSE 'Product Removed' END,
                   CASE WHEN t.r < 0.06 THEN jsonb_build_object('url', '{PROMO}?utm_source=kakao')
                        WHEN t.r < 0.60 THEN jsonb_build_object('url', 'https://dasi.shop/p/' || (t.g % 500))
                        WHEN t.r < 0.85 THEN jsonb_build_object('product_id', 'P' || (t.g % 500),
                                                                'price', 9000 + (t.g % 20) * 1000)
                        WHEN t.r < 0.88 THEN jsonb_build_object('order_id', 'O' || t.g,
                                                                'total', 15000 + (t.g % 30) * 5000)
                        ELSE '{{}}'::jsonb END,
                   t.at
            FROM (SELECT g, random() AS r, {skewed} AS shopper,
                         :now - random() * interval '{DAYS} days' AS at
                  FROM generate_series(1, {events}) AS g) AS t""",
        ),
        (
            "today's promo views (heavy shoppers come back to the sale page)",
            f"""INSERT INTO ingest.events (id, occurred_at, workspace_id, profile_id, message_id, type,
                                          properties, received_at)
            SELECT gen_random_uuid(), t.at, :ws, {PROFILE_ID.format(n="t.shopper")}, 'promo-' || t.g, 'page',
                   jsonb_build_object('url', '{PROMO}'), t.at
            FROM (SELECT g, (1 + (g % ({profiles} / 200)) * 200)::int AS shopper,
                         :today + random() * (:now - :today) AS at
                  FROM generate_series(1, {max(profiles // 50, 10)}) AS g) AS t""",
        ),
        (
            "profile aggregates",
            """INSERT INTO ingest.profile_aggregates (profile_id, workspace_id, visit_count,
                   first_visit_at, last_visit_at, last_seen_at, session_page_views, last_login_at,
                   purchase_count, purchase_total, last_purchase_at, cart_item_count, cart_total,
                   cart_last_added_at, updated_at)
            SELECT e.profile_id, :ws,
                   count(DISTINCT date_trunc('hour', e.occurred_at)) FILTER (WHERE e.name IS DISTINCT FROM
                       'Order Completed'),
                   min(e.occurred_at), max(e.occurred_at), max(e.occurred_at),
                   1 + count(*) % 7,
                   max(e.occurred_at) FILTER (WHERE e.name = 'Signed In'),
                   count(*) FILTER (WHERE e.name = 'Order Completed'),
                   coalesce(sum((e.properties->>'total')::numeric)
                            FILTER (WHERE e.name = 'Order Completed'), 0),
                   max(e.occurred_at) FILTER (WHERE e.name = 'Order Completed'),
                   count(*) FILTER (WHERE e.name = 'Product Added'),
                   coalesce(sum((e.properties->>'price')::numeric)
                            FILTER (WHERE e.name = 'Product Added'), 0),
                   max(e.occurred_at) FILTER (WHERE e.name = 'Product Added'),
                   :now
            FROM ingest.events e
            WHERE e.workspace_id = :ws
            GROUP BY e.profile_id""",
        ),
        (
            "carts emptied by a later order",
            """UPDATE ingest.profile_aggregates SET cart_item_count = 0, cart_total = 0
            WHERE workspace_id = :ws AND last_purchase_at > cart_last_added_at""",
        ),
        (
            "consents",
            f"""INSERT INTO ingest.consents (profile_id, topic, workspace_id, granted, given_at, updated_at)
            SELECT {pid}, 'sms', :ws, g % 3 <> 0, :now - interval '100 days', :now
            FROM generate_series(1, {profiles}) AS g WHERE g % 5 <> 0""",
        ),
        # what ingest copies onto the aggregates for segments, as it does after an identify
        ("member / channel friend / consent flags", flags.REFRESH_WORKSPACE.replace("$1", ":ws")),
        # what autovacuum does to freshly loaded tables within minutes (visibility map, statistics):
        # done here so that it neither runs during the measurements nor is missing from them
        ("vacuum and analyze", "VACUUM (ANALYZE)"),
    ]


async def generate(settings: Settings, workspace_id: uuid.UUID, profiles: int, events: int) -> None:
    conn = await _connect(settings)
    try:
        # bulk load: the events' secondary indexes are built after the rows are in (much faster)
        await conn.execute("SET work_mem = '256MB'")
        await conn.execute("SET maintenance_work_mem = '1GB'")
        await conn.execute("DROP INDEX ingest.ix_ingest_events_workspace_id_profile_id_occurred_at")
        params = {
            "ws": workspace_id,
            "ws_text": str(workspace_id),
            "now": NOW,
            "today": start_of_local_day(NOW, TZ),
        }
        for label, sql in _generation(profiles, events):
            if label == "profile aggregates":
                await _timed(
                    "event indexes",
                    conn.execute(
                        "CREATE INDEX ix_ingest_events_workspace_id_profile_id_occurred_at "
                        "ON ingest.events (workspace_id, profile_id, occurred_at)"
                    ),
                )
            query, args = _positional(sql, params)
            await _timed(label, conn.execute(query, *args))
    finally:
        await conn.close()


_TYPES = {"ws": "uuid", "ws_text": "text", "now": "timestamptz", "today": "timestamptz"}


def _positional(sql: str, params: dict[str, Any]) -> tuple[str, list[Any]]:
    """:name -> $n::type for asyncpg (only the names the statement uses)."""
    args: list[Any] = []
    for name in sorted(params, key=len, reverse=True):
        token = f":{name}"
        if token in sql.replace("::", "  "):
            args.append(params[name])
            sql = sql.replace(f" {token}", f" ${len(args)}::{_TYPES[name]}").replace(
                f"({token}", f"(${len(args)}::{_TYPES[name]}"
            )
    return sql, args


async def _timed(label: str, work: Awaitable[Any]) -> Any:
    started = time.perf_counter()
    result = await work
    print(f"  {label:<64} {time.perf_counter() - started:8.1f} s", flush=True)
    return result


async def _connect(settings: Settings) -> asyncpg.Connection:
    url = make_url(settings.require_database_url())
    return await asyncpg.connect(
        host=url.query.get("host") or url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        database=url.database,
        server_settings={"jit": "off"},
    )


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    ours: float
    hand: float
    note: str = ""


async def _ms(work: Callable[[], Awaitable[Any]], repeat: int = 1) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = await work()
        best = min(best, (time.perf_counter() - started) * 1000)
    return best, result


async def _hand_diff(
    session: Any,
    ws: uuid.UUID,
    segment_id: uuid.UUID,
    sql: str,
    params: dict[str, Any],
    only: list[uuid.UUID] | None,
) -> tuple[int, int]:
    """The same one-statement diff as the segmenter's, over the hand-written member query."""
    statement = text(
        f"""WITH current AS ({sql}),
        diff AS (
            SELECT coalesce(c.profile_id, m.profile_id) AS profile_id, m.profile_id IS NULL AS entering
            FROM current c FULL JOIN (
                SELECT profile_id FROM segmenter.memberships WHERE segment_id = :seg
                AND (CAST(:only AS uuid[]) IS NULL OR profile_id = ANY(CAST(:only AS uuid[])))
            ) m ON m.profile_id = c.profile_id
            WHERE c.profile_id IS NULL OR m.profile_id IS NULL),
        entered AS (
            INSERT INTO segmenter.memberships (workspace_id, segment_id, profile_id, entered_at)
            SELECT :ws, :seg, profile_id, :now FROM diff WHERE entering
            ON CONFLICT DO NOTHING RETURNING profile_id),
        exited AS (
            DELETE FROM segmenter.memberships m
            WHERE m.segment_id = :seg
            AND m.profile_id = ANY(ARRAY(SELECT profile_id FROM diff WHERE NOT entering))
            RETURNING m.profile_id),
        logged AS (
            INSERT INTO segmenter.membership_changes (workspace_id, segment_id, profile_id, change, at)
            SELECT :ws, :seg, profile_id, 'entered', :now FROM entered
            UNION ALL SELECT :ws, :seg, profile_id, 'exited', :now FROM exited
            RETURNING change)
        SELECT count(*) FILTER (WHERE change = 'entered'), count(*) FILTER (WHERE change = 'exited')
        FROM logged"""
    )
    row = (
        await session.execute(statement, {**params, "ws": ws, "seg": segment_id, "now": NOW, "only": only})
    ).one()
    return int(row[0]), int(row[1])


async def _ours_live(
    session: Any, ws: uuid.UUID, segment: repository.LiveSegment, shopper: uuid.UUID
) -> repository.Diff:
    """What the stream consumer does per segment: the segment's live statement (built on first use,
    then kept) run for one profile: its diff."""
    return await materialize.reevaluate_segment(session, ws, segment, [shopper], NOW)


async def _live_transaction(sessionmaker: Any, ws: uuid.UUID, shopper: uuid.UUID) -> materialize.LiveResult:
    """The stream consumer's whole work for an event batch of one shopper: one transaction that
    reads and locks the workspace's materialized segments, re-evaluates each, and commits."""
    async with session_scope(sessionmaker) as session:
        return await materialize.reevaluate_profiles(session, ws, [shopper], NOW)


async def _hand_count(session: Any, ws: uuid.UUID, sql: str, params: dict[str, Any]) -> int:
    statement = text(f"SELECT count(*) FROM ({sql}) AS members")
    return int(await session.scalar(statement, {**params, "ws": ws, "only": None}) or 0)


async def _segment(session: Any, ws: uuid.UUID, name: str, definition: dict[str, Any]) -> Segment:
    segment = Segment(
        id=uuid.uuid4(),
        workspace_id=ws,
        name=f"{name} ({uuid.uuid4().hex[:6]})",
        definition=Definition.model_validate(definition).model_dump(
            mode="json", by_alias=True, exclude_none=True
        ),
        refresh_every_minutes=None,
        created_at=NOW,
        updated_at=NOW,
    )
    session.add(segment)
    await session.flush()
    return segment


CHANGES = [
    # ~0.5% of shoppers buy now (they leave the cart abandoners), ~0.5% put something in the cart
    "UPDATE ingest.profile_aggregates SET last_purchase_at = :now, purchase_count = purchase_count + 1 "
    "WHERE workspace_id = :ws AND hashtext(profile_id::text) % 200 = 0",
    "UPDATE ingest.profile_aggregates SET cart_item_count = cart_item_count + 1, cart_last_added_at = :now "
    "WHERE workspace_id = :ws AND hashtext(profile_id::text) % 200 = 1",
    "UPDATE ingest.profile_aggregates SET visit_count = visit_count + 5, "
    "purchase_total = purchase_total + 100000 "
    "WHERE workspace_id = :ws AND hashtext(profile_id::text) % 200 = 2",
    "UPDATE ingest.profile_aggregates SET last_login_at = :now WHERE workspace_id = :ws "
    "AND hashtext(profile_id::text) % 200 = 3",
]


async def measure(settings: Settings, workspace: WorkspaceContext) -> None:
    engine = create_engine(settings)
    sessionmaker = create_sessionmaker(engine)
    clock = FrozenClock(NOW)
    hand = _hand_sql(NOW)
    rows: dict[str, list[Row]] = {"estimate": [], "first": [], "second": [], "live": []}
    ours_ids: dict[str, Segment] = {}
    hand_ids: dict[str, Segment] = {}
    try:
        async with session_scope(sessionmaker) as session:
            for name, definition in SEGMENTS.items():
                ours_ids[name] = await _segment(session, workspace.id, name, definition)
                hand_ids[name] = await _segment(session, workspace.id, f"hand: {name}", definition)
        print("\nestimate (count now)", flush=True)
        for name, definition in SEGMENTS.items():
            async with session_scope(sessionmaker) as session:
                d = Definition.model_validate(definition)
                ours, estimate = await _ms(partial(service.estimate, session, workspace, clock, d), repeat=3)
                sql, params = hand[name]
                theirs, count = await _ms(partial(_hand_count, session, workspace.id, sql, params), repeat=3)
            assert estimate.count == count, (name, estimate.count, count)
            rows["estimate"].append(Row(name, ours, theirs, f"{count:,} members"))
            print(f"  {name:<48} {ours:9.1f} ms   hand {theirs:9.1f} ms   {count:>9,} members", flush=True)

        for run in ("first", "second"):
            if run == "second":
                async with session_scope(sessionmaker) as session:
                    for change in CHANGES:
                        await session.execute(text(change), {"ws": workspace.id, "now": NOW})
                    await session.execute(text("ANALYZE ingest.profile_aggregates"))
            print(f"\nfull materialization, {run} run (entered / exited)", flush=True)
            for name in SEGMENTS:
                async with session_scope(sessionmaker) as session:
                    segment = await repository.get_segment(session, workspace.id, ours_ids[name].id)
                    assert segment is not None
                    ours, result = await _ms(partial(materialize.refresh_segment, session, segment, TZ, NOW))
                sql, params = hand[name]
                async with session_scope(sessionmaker) as session:
                    theirs, (entered, exited) = await _ms(
                        partial(_hand_diff, session, workspace.id, hand_ids[name].id, sql, params, None)
                    )
                assert (result.entered, result.exited) == (entered, exited), (name, result, entered, exited)
                note = f"+{result.entered:,} / -{result.exited:,} -> {result.count:,}"
                rows[run].append(Row(name, ours, theirs, note))
                print(f"  {name:<48} {ours:9.1f} ms   hand {theirs:9.1f} ms   {note}", flush=True)

        print("\nlive re-evaluation of one shopper (the segment's diff for one profile)", flush=True)
        async with session_scope(sessionmaker) as session:
            shopper = await session.scalar(
                text(
                    "SELECT profile_id FROM segmenter.memberships WHERE segment_id = :seg "
                    "ORDER BY profile_id LIMIT 1"
                ),
                {"seg": ours_ids["cart abandoners, no purchase in 7 days"].id},
            )
        for name in SEGMENTS:
            live = repository.LiveSegment(ours_ids[name].id, ours_ids[name].definition, TZ)
            materialize.forget_live_statements()
            async with session_scope(sessionmaker) as session:
                cold, _ = await _ms(partial(_ours_live, session, workspace.id, live, shopper))
                ours, _ = await _ms(partial(_ours_live, session, workspace.id, live, shopper), repeat=5)
                sql, params = hand[name]
                theirs, _ = await _ms(
                    partial(_hand_diff, session, workspace.id, hand_ids[name].id, sql, params, [shopper]),
                    repeat=5,
                )
            rows["live"].append(Row(name, ours, theirs))
            print(
                f"  {name:<48} {ours:9.1f} ms   hand {theirs:9.1f} ms   first use {cold:.1f} ms", flush=True
            )
        materialize.forget_live_statements()
        cold, result = await _ms(partial(_live_transaction, sessionmaker, workspace.id, shopper))
        times = []
        for _ in range(LIVE_REPEAT):
            took, result = await _ms(partial(_live_transaction, sessionmaker, workspace.id, shopper))
            times.append(took)
        times.sort()
        print(
            f"  {'all ' + str(result.segments) + ' materialized segments, one transaction':<48} "
            f"{statistics.median(times):9.1f} ms   median of {LIVE_REPEAT} (best {times[0]:.1f}, "
            f"p90 {times[int(LIVE_REPEAT * 0.9) - 1]:.1f}, first use {cold:.1f}): the stream "
            "consumer's work per event batch of one shopper, commit included",
            flush=True,
        )
    finally:
        await engine.dispose()


async def main_async(args: argparse.Namespace, server_url: str) -> None:
    admin = make_url(server_url)
    admin_conn = await asyncpg.connect(
        host=admin.query.get("host") or admin.host,
        port=admin.port,
        user=admin.username,
        password=admin.password,
        database="postgres",
    )
    name = args.database or f"dasi_bench_seg_{uuid.uuid4().hex[:8]}"
    database_url = admin.set(database=name).render_as_string(hide_password=False)
    settings = Settings(database_url=database_url, redis_url="redis://unused")
    try:
        if args.database:  # a store generated by an earlier run with --keep
            conn = await _connect(settings)
            workspace_id = await conn.fetchval(
                "SELECT id FROM platform.workspaces ORDER BY created_at LIMIT 1"
            )
            profiles = await conn.fetchval("SELECT count(*) FROM ingest.profiles")
            events = await conn.fetchval("SELECT count(*) FROM ingest.events")
            # the segments of earlier runs, so the live figure is for this run's four
            for table in ("membership_changes", "memberships", "segment_refreshes", "segments"):
                await conn.execute(f"DELETE FROM segmenter.{table} WHERE workspace_id = $1", workspace_id)
            await conn.close()
            await asyncio.to_thread(migrate.upgrade, database_url)  # new indexes, say
            conn = await _connect(settings)
            await _timed("vacuum and analyze", conn.execute("VACUUM (ANALYZE)"))  # as after generating
            await conn.close()
            print(
                f"machine: {os.cpu_count()} cores; reusing {name}: {profiles:,} profiles, {events:,} events"
            )
        else:
            await admin_conn.execute(f'CREATE DATABASE "{name}"')
            await asyncio.to_thread(migrate.upgrade, database_url)
            engine = create_engine(settings)
            async with session_scope(create_sessionmaker(engine)) as session:
                created = await create_workspace(session, "벤치마크 스토어")
            await engine.dispose()
            workspace_id = created.workspace.id
            print(
                f"machine: {os.cpu_count()} cores; {args.profiles:,} profiles, {args.events:,} events over "
                f"{DAYS} days; database {name}",
                flush=True,
            )
            started = time.perf_counter()
            await generate(settings, workspace_id, args.profiles, args.events)
            print(f"  {'generated in':<64} {time.perf_counter() - started:8.1f} s", flush=True)
        await measure(settings, WorkspaceContext(workspace_id, "벤치마크 스토어", TZ, "KRW"))
    finally:
        if not args.keep and not args.database:
            await admin_conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin_conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the database (to EXPLAIN ANALYZE by hand)")
    parser.add_argument("--database", help="measure again on a database kept by an earlier run (--keep)")
    args = parser.parse_args()
    base = Settings()
    if not base.database_url:  # embedded servers of its own, so a test run ending elsewhere cannot stop them
        base = base.model_copy(update={"state_dir": base.state_dir / "bench"})
    with stack.servers_for_command(base) as ready:
        asyncio.run(main_async(args, ready.require_database_url()))


if __name__ == "__main__":
    main()
