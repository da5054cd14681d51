"""Profile aggregates on a small scripted history with known answers: visits (30-minute gaps and
local midnight in Seoul), page views in the current visit, login, purchases with a refund, the cart
(add, remove, emptied by a purchase), products viewed and coupons held. The same answers whether
the history arrives in one batch, in several, or shuffled."""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from services.ingest.models import PROFILE_ROW_TABLES, CartItem, HeldCoupon, ProductView, ProfileAggregates
from shared.db import session_scope

KST = timezone(timedelta(hours=9))


def at(day: int, hour: int, minute: int) -> str:
    return datetime(2026, 11, day, hour, minute, tzinfo=KST).isoformat()


def page(when: str, url: str, user: str = "user-1004") -> dict:
    return {"type": "page", "userId": user, "timestamp": when, "properties": {"url": url}}


def track(when: str, event: str, user: str = "user-1004", **properties) -> dict:
    return {"type": "track", "userId": user, "timestamp": when, "event": event, "properties": properties}


HISTORY = [
    page(at(20, 10, 0), "https://dasi.shop/"),  # visit 1
    track(
        at(20, 10, 5),
        "Product Viewed",
        product_id="P1",
        name="수분크림",
        price=25000,
        category="스킨케어",
        brand="다시랩",
    ),
    track(at(20, 10, 6), "Product Added", product_id="P1", name="수분크림", price=25000, quantity=2),
    page(at(20, 10, 20), "https://dasi.shop/cart"),
    page(at(20, 11, 0), "https://dasi.shop/"),  # 40 minutes later: visit 2
    track(at(20, 11, 1), "Product Added", product_id="P2", name="선크림", price="15,000", quantity=1),
    track(at(20, 11, 2), "Product Removed", product_id="P1", quantity=1),
    page(at(20, 23, 50), "https://dasi.shop/sale"),  # visit 3
    page(at(21, 0, 5), "https://dasi.shop/sale"),  # 15 minutes later but a new day in Seoul: visit 4
    track(at(21, 0, 6), "Signed In"),
    page(at(21, 0, 7), "https://dasi.shop/checkout"),
    track(
        at(21, 0, 10),
        "Order Completed",
        order_id="ORD-1",
        total=40000,
        revenue=38000,
        products=[{"product_id": "P1"}, {"product_id": "P2"}],
    ),
    track(
        at(21, 0, 11),
        "Coupon Issued",
        coupon_id="WELCOME10",
        coupon_name="신규 10% 할인",
        expires_at="2026-11-30T23:59:59+09:00",
    ),
    track(at(21, 0, 20), "Product Added", product_id="P3", name="토너", price=18000),
    track(at(23, 9, 0), "Order Refunded", order_id="ORD-1", total=10000),  # back office: not a visit
]


async def aggregates_of(db, workspace_id):
    async with session_scope(db) as session:
        aggregates = (
            await session.scalars(
                select(ProfileAggregates).where(ProfileAggregates.workspace_id == workspace_id)
            )
        ).one()
        cart = list(await session.scalars(select(CartItem).where(CartItem.workspace_id == workspace_id)))
        views = list(
            await session.scalars(select(ProductView).where(ProductView.workspace_id == workspace_id))
        )
        coupons = list(
            await session.scalars(select(HeldCoupon).where(HeldCoupon.workspace_id == workspace_id))
        )
    return aggregates, cart, views, coupons


def kst(day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=KST)


def assert_known_answers(aggregates, cart, views, coupons):
    assert aggregates.visit_count == 4
    assert aggregates.first_visit_at == kst(20, 10, 0)
    assert aggregates.last_visit_at == kst(21, 0, 5)
    assert aggregates.last_seen_at == kst(21, 0, 20)
    assert aggregates.session_page_views == 2  # /sale and /checkout in the visit that began at 00:05
    assert aggregates.last_login_at == kst(21, 0, 6)
    assert aggregates.purchase_count == 1
    assert aggregates.purchase_total == Decimal("30000.00")  # 40,000 paid, 10,000 refunded
    assert aggregates.last_purchase_at == kst(21, 0, 10)
    assert (aggregates.cart_item_count, aggregates.cart_total) == (1, Decimal("18000.00"))
    assert aggregates.cart_last_added_at == kst(21, 0, 20)
    assert [(c.product_id, c.name, c.quantity) for c in cart] == [("P3", "토너", 1)]
    assert [(v.product_id, v.name, v.category, v.brand, v.view_count) for v in views] == [
        ("P1", "수분크림", "스킨케어", "다시랩", 1)
    ]
    assert [(c.coupon_id, c.name, c.expires_at) for c in coupons] == [
        ("WELCOME10", "신규 10% 할인", kst(30, 23, 59) + timedelta(seconds=59))
    ]


def with_ids(history):
    return [{**message, "messageId": f"m-{i}"} for i, message in enumerate(history)]


async def test_one_batch_gives_the_known_answers(client, db, shop):
    response = await client.post("/v1/batch", json={"batch": with_ids(HISTORY)})
    assert response.status_code == 200, response.text
    assert_known_answers(*await aggregates_of(db, shop.workspace.id))


@pytest.mark.parametrize("cuts", [(3, 7, 11), (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14)])
async def test_history_in_several_batches_gives_the_same_answers(client, db, shop, cuts):
    messages = with_ids(HISTORY)
    bounds = [0, *cuts, len(messages)]
    for start, end in itertools.pairwise(bounds):
        response = await client.post("/v1/batch", json={"batch": messages[start:end]})
        assert response.status_code == 200, response.text
    assert_known_answers(*await aggregates_of(db, shop.workspace.id))


async def test_order_within_a_batch_does_not_matter(client, db, shop):
    messages = with_ids(HISTORY)
    random.Random(7).shuffle(messages)
    assert (await client.post("/v1/batch", json={"batch": messages})).status_code == 200
    assert_known_answers(*await aggregates_of(db, shop.workspace.id))


async def test_a_repeated_message_is_not_counted_twice(client, db, shop):
    messages = with_ids(HISTORY)
    assert (await client.post("/v1/batch", json={"batch": messages})).status_code == 200
    assert (await client.post("/v1/batch", json={"batch": messages[8:13]})).status_code == 200
    assert_known_answers(*await aggregates_of(db, shop.workspace.id))


async def test_anonymous_history_is_merged_into_the_known_profile(client, db, shop):
    anonymous = str(uuid.uuid4())
    before_login = [
        as_visitor(page(at(19, 9, 0), "https://dasi.shop/"), anonymous),
        as_visitor(track(at(19, 9, 1), "Product Added", product_id="P9", name="립밤", price=9000), anonymous),
    ]
    messages = with_ids([*before_login, *HISTORY])
    first, rest = messages[:2], messages[2:]
    assert (await client.post("/v1/batch", json={"batch": rest})).status_code == 200
    assert (await client.post("/v1/batch", json={"batch": first})).status_code == 200
    await log_in(client, anonymous)

    aggregates, cart, _views, _coupons = await aggregates_of(db, shop.workspace.id)
    assert aggregates.visit_count == 5  # the anonymous visit of the 19th joins the four known ones
    assert aggregates.first_visit_at == kst(19, 9, 0)
    # P9 was added before the purchase, so the purchase emptied it from the merged cart
    assert [c.product_id for c in cart] == ["P3"]
    assert await rows_of_gone_profiles(db) == 0


async def test_a_merge_leaves_no_row_of_the_merged_away_profile(client, db, shop):
    """The visitor's views, coupon, cart and consent go with its profile (no foreign key does it)."""
    anonymous = str(uuid.uuid4())
    visitor = [
        as_visitor(track(at(19, 9, 0), "Product Viewed", product_id="P7"), anonymous),
        as_visitor(track(at(19, 9, 1), "Product Added", product_id="P7", price=9000), anonymous),
        as_visitor(
            track(at(19, 9, 2), "Coupon Issued", coupon_id="WELCOME", coupon_name="첫 구매 10% 할인"),
            anonymous,
        ),
        {
            "type": "identify",
            "anonymousId": anonymous,
            "traits": {"consents": {"sms": True}},
            "timestamp": at(19, 9, 3),
        },
    ]
    assert (await client.post("/v1/batch", json={"batch": with_ids([*visitor, *HISTORY])})).status_code == 200
    await log_in(client, anonymous)

    assert await rows_of_gone_profiles(db) == 0
    _aggregates, _cart, views, coupons = await aggregates_of(db, shop.workspace.id)
    assert "P7" in {v.product_id for v in views} and "WELCOME" in {c.coupon_id for c in coupons}


def as_visitor(message: dict, anonymous: str) -> dict:
    return {**message, "userId": None, "anonymousId": anonymous}


async def log_in(client, anonymous: str) -> None:
    """The visitor signs in as user-1004: an identify naming both ids merges their profiles."""
    login = {
        "type": "identify",
        "userId": "user-1004",
        "anonymousId": anonymous,
        "messageId": "login",
        "timestamp": at(21, 0, 30),
    }
    assert (await client.post("/v1/batch", json={"batch": [login]})).status_code == 200


async def rows_of_gone_profiles(db) -> int:
    """Rows of the tables that hold a profile's rows, whose profile no longer exists."""
    async with session_scope(db) as session:
        counts = [
            await session.scalar(
                text(f"""SELECT count(*) FROM ingest.{table} AS t
                    WHERE NOT EXISTS (SELECT 1 FROM ingest.profiles AS p WHERE p.id = t.profile_id)""")  # noqa: S608
            )
            for table in PROFILE_ROW_TABLES
        ]
    return sum(counts)
