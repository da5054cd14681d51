"""Live re-evaluation: events posted through ingest reach `dasi:events` (the ingest worker's outbox
publisher, run here once), the segmenter's consumer re-evaluates the materialized segments for just
those shoppers, and memberships and history change within the round: a shopper who adds to cart
enters the cart abandoners, and exits when they buy. Repeats change nothing; another workspace's
events never touch this one's memberships."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from services.ingest.relay import drain_outbox
from services.segmenter import worker
from services.segmenter.ingest_tables import profiles
from services.segmenter.live import GROUP, consume_events, consume_round
from services.segmenter.materialize import reevaluate_profiles
from services.segmenter.models import Membership, MembershipChange
from services.segmenter.schemas import CART_ABANDONERS, PROMO_PAGE_TODAY
from shared.contracts import decode, recorded_events
from shared.db import session_scope
from shared.testing.fixtures import run_worker_burst
from shared.worker import worker_settings
from tests.segmenter.conftest import at, identify, send, track

STREAM = "dasi:events"


async def saved_and_refreshed(shop, name, definition):
    response = await shop.api.post("/v1/segments", json={"name": name, "definition": definition})
    assert response.status_code == 201, response.text
    segment = response.json()
    assert (await shop.api.post(f"/v1/segments/{segment['id']}/refresh")).status_code == 200
    return segment


async def history_of(db, segment) -> list[tuple[str, str]]:
    async with session_scope(db) as session:
        rows = await session.execute(
            select(profiles.c.user_id, MembershipChange.change)
            .join(profiles, profiles.c.id == MembershipChange.profile_id)
            .where(MembershipChange.segment_id == segment["id"])
            .order_by(MembershipChange.seq)
        )
        return [(u, c) for u, c in rows.all()]


async def members_of(db, segment) -> set[str]:
    async with session_scope(db) as session:
        rows = await session.scalars(
            select(profiles.c.user_id)
            .join(Membership, Membership.profile_id == profiles.c.id)
            .where(Membership.segment_id == segment["id"])
        )
        return set(rows)


async def consume_all(db, redis, clock) -> int:
    """The ingest worker's publisher once, then the segmenter's consumer until the stream is read."""
    await drain_outbox(db, redis, STREAM)
    total = 0
    while handled := await consume_round(redis, db, clock, STREAM, consumer="test", block_ms=None):
        total += handled
    return total


async def last_read(redis) -> str:
    [group] = [g for g in await redis.xinfo_groups(STREAM) if g["name"] == GROUP.encode()]
    return group["last-delivered-id"].decode()


NEW_SHOPPER_ADDS = [
    identify("u-new", at(11, 23, 10, 1), name="한신규"),
    track("u-new", at(11, 23, 10, 2), "Product Added", product_id="P1", price=25000, quantity=1),
]
NEW_SHOPPER_BUYS = [
    track("u-new", at(11, 23, 10, 6), "Order Completed", order_id="ORD-7", total=25000, products=[]),
]


async def test_a_shopper_enters_the_cart_segment_when_the_event_arrives_and_exits_on_purchase(
    settings, db, redis, clock, shop
):
    segment = await saved_and_refreshed(shop, "장바구니 이탈 고객", CART_ABANDONERS)
    assert await members_of(db, segment) == {"u-cart"}
    await consume_all(db, redis, clock)  # the scripted history: nothing changes
    assert await history_of(db, segment) == [("u-cart", "entered")]

    clock.advance(timedelta(minutes=2))
    await send(settings, clock, shop, NEW_SHOPPER_ADDS, "adds")
    assert await consume_all(db, redis, clock) == 1  # one stream entry: one stored transaction
    assert await members_of(db, segment) == {"u-cart", "u-new"}
    assert await history_of(db, segment) == [("u-cart", "entered"), ("u-new", "entered")]
    changes = (await shop.api.get(f"/v1/segments/{segment['id']}/changes")).json()["items"]
    assert changes[-1]["user_id"] == "u-new" and changes[-1]["at"] == "2026-11-23T01:02:00Z"

    clock.advance(timedelta(minutes=5))
    await send(settings, clock, shop, NEW_SHOPPER_BUYS, "buys")
    assert await consume_all(db, redis, clock) == 1
    assert await members_of(db, segment) == {"u-cart"}
    assert (await history_of(db, segment))[-1:] == [("u-new", "exited")]


async def test_a_repeated_delivery_changes_nothing(settings, db, redis, clock, shop):
    segment = await saved_and_refreshed(shop, "장바구니 이탈 고객", CART_ABANDONERS)
    await send(settings, clock, shop, NEW_SHOPPER_ADDS, "adds")
    await drain_outbox(db, redis, STREAM)
    entries = await redis.xrange(STREAM)
    await consume_all(db, redis, clock)
    before = await history_of(db, segment)
    # the same entries again (a crash before the ack, say)
    for _id, fields in entries:
        await redis.xadd(STREAM, fields)
    await consume_all(db, redis, clock)
    assert await history_of(db, segment) == before
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0  # all acked


async def test_entries_of_one_event_each_are_still_read(settings, db, redis, clock, shop):
    """What an ingest older than `EventsRecorded` wrote: an `EventRecorded` entry per event."""
    segment = await saved_and_refreshed(shop, "장바구니 이탈 고객", CART_ABANDONERS)
    await consume_all(db, redis, clock)  # the scripted history
    await send(settings, clock, shop, NEW_SHOPPER_ADDS, "adds")
    await drain_outbox(db, redis, STREAM)
    [(entry_id, fields)] = await redis.xrange(STREAM, min="(" + (await last_read(redis)))
    await redis.xdel(STREAM, entry_id)
    for event in recorded_events(decode(fields)):
        await redis.xadd(STREAM, event.to_stream_fields())
    assert await consume_all(db, redis, clock) == 2
    assert await members_of(db, segment) == {"u-cart", "u-new"}


async def test_segments_never_refreshed_are_left_to_their_first_refresh(settings, db, redis, clock, shop):
    response = await shop.api.post("/v1/segments", json={"name": "장바구니", "definition": CART_ABANDONERS})
    segment = response.json()
    await send(settings, clock, shop, NEW_SHOPPER_ADDS, "adds")
    await consume_all(db, redis, clock)
    assert await members_of(db, segment) == set()


async def test_another_workspaces_events_do_not_touch_these_memberships(settings, db, redis, clock, shops):
    a, b = shops
    mine = await saved_and_refreshed(a, "장바구니 이탈 고객", CART_ABANDONERS)
    theirs = await saved_and_refreshed(b, "장바구니 이탈 고객", CART_ABANDONERS)
    await send(settings, clock, b, NEW_SHOPPER_ADDS, "b-adds")
    await consume_all(db, redis, clock)
    assert await members_of(db, mine) == {"u-cart"}
    assert await members_of(db, theirs) == {"u-cart", "u-new"}
    assert await history_of(db, mine) == [("u-cart", "entered")]


async def test_the_worker_consumes_the_stream(settings, db, redis, clock, shop):
    segment = await saved_and_refreshed(shop, "장바구니 이탈 고객", CART_ABANDONERS)
    await send(settings, clock, shop, NEW_SHOPPER_ADDS, "adds")
    await drain_outbox(db, redis, STREAM)
    WorkerSettings = worker_settings(
        "segmenter", [consume_events], queue_name=worker.QUEUE, settings=settings, clock=clock
    )
    await redis.enqueue_job(
        "consume_events", for_seconds=0.1, _queue_name=worker.QUEUE, _job_id="consume-now"
    )
    ran = await run_worker_burst(WorkerSettings, settings)
    assert ran.jobs_complete == 1 and ran.jobs_failed == 0
    assert await members_of(db, segment) == {"u-cart", "u-new"}
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0


async def test_kept_live_statements_answer_for_other_shoppers_at_another_time(db, redis, clock, shop):
    """Each segment's live statement is built once (here for one shopper, today) and run again with
    other shoppers a day later: the same members as the segment's query built afresh then, and a
    full refresh after it finds nothing left to change."""
    definitions = {
        "26세 이상": {"include": {"type": "age", "min_age": 26}},  # u-buyer turns 26 tomorrow
        "쿠폰 내일 만료": {"include": {"type": "coupon", "expiring_within_days": 1}},  # u-dormant, tomorrow
        "오늘 프로모션 3회": PROMO_PAGE_TODAY,  # u-promo today, nobody tomorrow
        "장바구니 이탈 고객": CART_ABANDONERS,
        "하루 안에 방문": {"include": {"type": "last_visit", "within_days": 1}},
    }
    segments = {name: await saved_and_refreshed(shop, name, d) for name, d in definitions.items()}
    nested = await saved_and_refreshed(
        shop, "26세 이상 안의", {"include": {"type": "segment", "segment_id": segments["26세 이상"]["id"]}}
    )
    async with session_scope(db) as session:
        ids = list(await session.scalars(select(profiles.c.id).where(profiles.c.workspace_id == shop.id)))
        first = await reevaluate_profiles(session, shop.id, ids[:1], clock.now())
    assert (first.segments, first.entered, first.exited) == (6, 0, 0)

    clock.advance(timedelta(days=1))
    async with session_scope(db) as session:
        later = await reevaluate_profiles(session, shop.id, ids, clock.now())
    assert later.entered >= 3 and later.exited >= 1  # u-buyer twice, u-dormant; u-promo
    for name, definition in definitions.items():
        assert await members_of(db, segments[name]) == await shop.users(definition), name
        refreshed = (await shop.api.post(f"/v1/segments/{segments[name]['id']}/refresh")).json()
        assert (refreshed["entered"], refreshed["exited"]) == (0, 0), name
    assert await members_of(db, nested) == {"u-cart", "u-buyer"}

    # a segment it uses changes: the kept statement is not used any more
    response = await shop.api.patch(
        f"/v1/segments/{segments['26세 이상']['id']}",
        json={"definition": {"include": {"type": "age", "min_age": 30}}},
    )
    assert response.status_code == 200, response.text
    async with session_scope(db) as session:
        await reevaluate_profiles(session, shop.id, ids, clock.now())
    assert await members_of(db, nested) == {"u-cart"}
