"""Materialized memberships: a refresh applies the difference between the stored members and the
segment's current set, with entered / exited history; people leave by time alone ("within 7 days")
at the next refresh; the worker refreshes what its schedule makes due (called directly and through a
real arq worker); another workspace's segments, members and changes are 404."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from services.segmenter import worker
from services.segmenter.materialize import refresh_due
from services.segmenter.models import Membership, MembershipChange, SegmentRefresh
from services.segmenter.schemas import CART_ABANDONERS, PROMO_PAGE_TODAY
from services.segmenter.worker import refresh_due_segments
from shared.db import session_scope
from shared.testing.fixtures import run_worker_burst
from shared.worker import worker_settings
from tests.segmenter.conftest import at, send, track


async def create(shop, name, definition, **fields):
    response = await shop.api.post("/v1/segments", json={"name": name, "definition": definition, **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def refresh(shop, segment):
    response = await shop.api.post(f"/v1/segments/{segment['id']}/refresh")
    assert response.status_code == 200, response.text
    return response.json()


async def members(shop, segment, **params):
    response = await shop.api.get(f"/v1/segments/{segment['id']}/members", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def changes(shop, segment, since=None):
    params = {"since": since} if since is not None else {}
    response = await shop.api.get(f"/v1/segments/{segment['id']}/changes", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def summary(page):
    return [(c["user_id"], c["change"]) for c in page["items"]]


async def test_refresh_records_who_entered_and_who_exited(settings, clock, shop):
    segment = await create(shop, "장바구니 이탈 고객", CART_ABANDONERS)
    first = await refresh(shop, segment)
    assert (first["entered"], first["exited"], first["count"]) == (1, 0, 1)
    assert first["took_ms"] >= 0 and first["refreshed_at"] == "2026-11-23T01:00:00Z"
    page = await members(shop, segment)
    assert [(m["user_id"], m["entered_at"]) for m in page["items"]] == [("u-cart", "2026-11-23T01:00:00Z")]
    assert page["next_cursor"] is None and page["refreshed_at"] == "2026-11-23T01:00:00Z"
    log = await changes(shop, segment)
    assert summary(log) == [("u-cart", "entered")]

    # nothing changed: a second refresh changes nothing
    again = await refresh(shop, segment)
    assert (again["entered"], again["exited"], again["count"]) == (0, 0, 1)

    # an hour later u-cart pays and u-promo leaves something in the cart
    clock.advance(timedelta(hours=1))
    await send(
        settings,
        clock,
        shop,
        [
            track(
                "u-cart", at(11, 23, 10, 30), "Order Completed", order_id="ORD-9", total=25000, products=[]
            ),
            track("u-promo", at(11, 23, 10, 40), "Product Added", product_id="P7", price=9000, quantity=1),
        ],
        "later",
    )
    later = await refresh(shop, segment)
    assert (later["entered"], later["exited"], later["count"]) == (1, 1, 1)
    assert [m["user_id"] for m in (await members(shop, segment))["items"]] == ["u-promo"]
    after_first = await changes(shop, segment, since=log["next_cursor"])
    assert sorted(summary(after_first)) == [("u-cart", "exited"), ("u-promo", "entered")]
    assert all(c["at"] == "2026-11-23T02:00:00Z" for c in after_first["items"])
    # by time: the same answer
    by_time = await changes(shop, segment, since="2026-11-23T10:30:00+09:00")
    assert by_time["items"] == after_first["items"]
    # read on from the last cursor: nothing new, and the cursor stays
    caught_up = await changes(shop, segment, since=after_first["next_cursor"])
    assert caught_up == {"items": [], "next_cursor": after_first["next_cursor"]}


async def test_time_alone_makes_people_leave_at_the_next_refresh(clock, shop):
    segment = await create(shop, "기획전 3회 이상 조회", PROMO_PAGE_TODAY)
    assert (await refresh(shop, segment))["entered"] == 1  # u-promo, three views today
    clock.advance(timedelta(days=1))  # tomorrow those views are not "today" any more
    tomorrow = await refresh(shop, segment)
    assert (tomorrow["entered"], tomorrow["exited"], tomorrow["count"]) == (0, 1, 0)
    assert summary(await changes(shop, segment)) == [("u-promo", "entered"), ("u-promo", "exited")]


async def test_members_are_paged_in_profile_id_order(shop):
    segment = await create(
        shop, "전체", {"include": {"not": {"type": "member", "is_member": False}}, "exclude": []}
    )
    everyone = await create(
        shop, "모두", {"include": {"any": [{"type": "member"}, {"type": "member", "is_member": False}]}}
    )
    assert (await refresh(shop, everyone))["count"] == 5
    first = await members(shop, everyone, limit=2)
    second = await members(shop, everyone, limit=2, cursor=first["next_cursor"])
    third = await members(shop, everyone, limit=2, cursor=second["next_cursor"])
    ids = [m["profile_id"] for page in (first, second, third) for m in page["items"]]
    assert len(ids) == 5 and ids == sorted(ids) and third["next_cursor"] is None
    assert (await refresh(shop, segment))["count"] == 2


async def test_a_definition_change_is_recomputed_by_the_next_refresh(shop):
    segment = await create(shop, "회원", {"include": {"type": "member"}})
    assert (await refresh(shop, segment))["count"] == 2
    changed = await shop.api.patch(
        f"/v1/segments/{segment['id']}", json={"definition": {"include": {"type": "channel_friend"}}}
    )
    assert changed.status_code == 200
    result = await refresh(shop, segment)
    assert (result["entered"], result["exited"], result["count"]) == (0, 1, 1)


async def _refreshes(db):
    async with session_scope(db) as session:
        return {r.segment_id: r for r in await session.scalars(select(SegmentRefresh))}


async def test_scheduled_refreshes_run_when_due(db, clock, shop):
    hourly = await create(shop, "장바구니", CART_ABANDONERS)
    on_demand = await create(shop, "회원", {"include": {"type": "member"}}, refresh_every_minutes=None)
    every_5 = await create(shop, "기획전", PROMO_PAGE_TODAY, refresh_every_minutes=5)
    assert "refresh_every_minutes" not in on_demand and every_5["refresh_every_minutes"] == 5

    assert await refresh_due(db, clock) == 2  # never refreshed and scheduled: due now
    done = await _refreshes(db)
    assert {str(k) for k in done} == {hourly["id"], every_5["id"]}
    assert await refresh_due(db, clock) == 0

    clock.advance(timedelta(minutes=5))
    assert await refresh_due(db, clock) == 1  # the 5-minute one only
    clock.advance(timedelta(minutes=55))
    assert await refresh_due(db, clock) == 2
    assert (await members(shop, on_demand))["items"] == []


async def test_the_worker_refreshes_due_segments(settings, db, redis, clock, shop):
    segment = await create(shop, "장바구니", CART_ABANDONERS)
    WorkerSettings = worker_settings(
        "segmenter", [refresh_due_segments], queue_name=worker.QUEUE, settings=settings, clock=clock
    )
    await redis.enqueue_job("refresh_due_segments", _queue_name=worker.QUEUE, _job_id="refresh-now")
    ran = await run_worker_burst(WorkerSettings, settings)
    assert ran.jobs_complete == 1 and ran.jobs_failed == 0
    assert [m["user_id"] for m in (await members(shop, segment))["items"]] == ["u-cart"]
    async with session_scope(db) as session:
        assert await session.scalar(select(func.count()).select_from(Membership)) == 1
        assert await session.scalar(select(func.count()).select_from(MembershipChange)) == 1


def test_the_worker_runs_its_jobs_on_schedule():
    jobs = {job.name: job for job in worker.WorkerSettings.cron_jobs}  # type: ignore[attr-defined]
    assert (
        jobs["cron:refresh_due_segments"].second == {5} and jobs["cron:refresh_due_segments"].run_at_startup
    )
    assert jobs["cron:consume_events"].second == set(range(60))


async def test_other_workspaces_memberships_are_404(shops):
    a, b = shops
    theirs = await create(b, "B 장바구니", CART_ABANDONERS)
    assert (await refresh(b, theirs))["count"] == 1
    for method, path in [
        ("post", "refresh"),
        ("get", "members"),
        ("get", "changes"),
    ]:
        response = await getattr(a.api, method)(f"/v1/segments/{theirs['id']}/{path}")
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/problem+json"
    mine = await create(a, "A 장바구니", CART_ABANDONERS)
    assert (await refresh(a, mine))["count"] == 1
    assert [m["user_id"] for m in (await members(a, mine))["items"]] == ["u-cart"]
    # A's refresh did not touch B's rows
    assert len((await members(b, theirs))["items"]) == 1


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("changes", {"since": "yesterday"}, "query.since"),
        ("changes", {"since": "2026-11-23T10:00:00"}, "query.since"),
        ("changes", {"limit": 0}, "query.limit"),
        ("members", {"cursor": "not-a-uuid"}, "query.cursor"),
        ("members", {"limit": 5000}, "query.limit"),
    ],
)
async def test_invalid_queries_are_422_naming_the_field(shop, path, params, field):
    segment = await create(shop, "장바구니", CART_ABANDONERS)
    response = await shop.api.get(f"/v1/segments/{segment['id']}/{path}", params=params)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == field


async def test_invalid_schedules_are_422_naming_the_field(shop):
    response = await shop.api.post(
        "/v1/segments", json={"name": "x", "definition": CART_ABANDONERS, "refresh_every_minutes": 0}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.refresh_every_minutes"


async def test_deleting_a_segment_deletes_its_memberships_and_history(db, shop):
    segment = await create(shop, "장바구니", CART_ABANDONERS)
    assert (await refresh(shop, segment))["count"] == 1
    assert (await shop.api.delete(f"/v1/segments/{segment['id']}")).status_code == 204
    async with session_scope(db) as session:
        for table in (Membership, MembershipChange, SegmentRefresh):
            assert await session.scalar(select(func.count()).select_from(table)) == 0, table


async def test_a_segment_using_another_is_materialized_from_both_definitions(shop):
    cart = await create(shop, "장바구니 보유", {"include": {"type": "cart_item_count", "gte": 1}})
    members_with_cart = await create(
        shop,
        "장바구니 회원",
        {"include": {"all": [{"type": "segment", "segment_id": cart["id"]}, {"type": "member"}]}},
    )
    # compiled inline: no refresh order between the two, the inner one need not be materialized
    result = await refresh(shop, members_with_cart)
    assert (result["entered"], result["count"]) == (1, 1)
    assert [m["user_id"] for m in (await members(shop, members_with_cart))["items"]] == ["u-cart"]
