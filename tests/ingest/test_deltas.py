"""What a batch adds to each profile (services/ingest/deltas.py), without a database: the edges of
visits (late events, local midnight, the stored last activity) and of the cart around a purchase."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from services.ingest.deltas import reduce
from services.ingest.facts import Fact

SEOUL = ZoneInfo("Asia/Seoul")
SHOPPER = uuid.uuid4()


def at(hour: int, minute: int = 0, day: int = 20) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=SEOUL)


def page(when: datetime) -> Fact:
    return Fact(SHOPPER, when, is_activity=True, is_page_view=True)


def cart(kind: str, when: datetime, product: str, quantity: int = 1, price: str = "10000") -> Fact:
    return Fact(
        SHOPPER,
        when,
        is_activity=True,
        kind=kind,
        product_id=product,
        quantity=quantity,
        price=Decimal(price),
    )


def test_visits_continue_from_the_stored_last_activity() -> None:
    facts = [page(at(10, 10)), page(at(10, 20)), page(at(11, 0)), page(at(11, 5))]
    [delta] = reduce(facts, {SHOPPER: at(10, 0)}, "Asia/Seoul").profiles
    # 10:10 continues the stored visit; 11:00 is 40 minutes later: a new one
    assert (delta.new_visits, delta.first_visit, delta.last_visit) == (1, at(11, 0), at(11, 0))
    assert (delta.page_views, delta.last_seen) == (2, at(11, 5))


def test_a_visit_with_no_new_start_keeps_counting_page_views() -> None:
    [delta] = reduce([page(at(10, 10)), page(at(10, 20))], {SHOPPER: at(10, 0)}, "Asia/Seoul").profiles
    assert (delta.new_visits, delta.last_visit, delta.page_views) == (0, None, 2)


def test_an_event_older_than_the_last_activity_opens_no_visit() -> None:
    late = [page(at(8, 0)), Fact(SHOPPER, at(8, 5), is_activity=True, kind="purchase", amount=Decimal(39000))]
    [delta] = reduce(late, {SHOPPER: at(10, 0)}, "Asia/Seoul").profiles
    assert (delta.new_visits, delta.page_views, delta.last_seen) == (0, 0, None)
    assert (delta.purchases, delta.purchase_amount) == (1, Decimal(39000))


def test_local_midnight_ends_a_visit_in_the_workspace_timezone() -> None:
    facts = [page(at(23, 50, day=20)), page(at(0, 5, day=21))]  # 15 minutes apart, across midnight
    assert reduce(facts, {}, "Asia/Seoul").profiles[0].new_visits == 2
    # the same instants are mid-afternoon in UTC: one visit there
    assert reduce(facts, {}, "UTC").profiles[0].new_visits == 1


def test_local_midnight_after_the_stored_last_activity_ends_its_visit() -> None:
    utc = ZoneInfo("UTC")
    stored = at(23, 55, day=20).astimezone(utc)  # the stored activity, read back from Postgres in UTC
    [delta] = reduce([page(at(0, 5, day=21).astimezone(utc))], {SHOPPER: stored}, "Asia/Seoul").profiles
    assert (delta.new_visits, delta.last_visit) == (1, at(0, 5, day=21))
    # just after midnight, the next activity within 30 minutes continues the visit
    [delta] = reduce([page(at(0, 20, day=21))], {SHOPPER: at(0, 5, day=21)}, "Asia/Seoul").profiles
    assert (delta.new_visits, delta.page_views) == (0, 1)


def test_a_refund_is_subtracted_whatever_its_sign() -> None:
    facts = [
        Fact(SHOPPER, at(10), kind="purchase", amount=Decimal(50000)),
        Fact(SHOPPER, at(11), kind="refund", amount=Decimal(-20000)),
    ]
    [delta] = reduce(facts, {}, "Asia/Seoul").profiles
    assert (delta.purchases, delta.purchase_amount, delta.last_purchase) == (1, Decimal(30000), at(10))


def test_a_purchase_takes_the_cart_added_before_it_and_keeps_what_came_after() -> None:
    facts = [
        cart("cart_add", at(10), "모자", 2),
        cart("cart_add", at(10, 5), "양말", 1),
        Fact(SHOPPER, at(10, 10), is_activity=True, kind="purchase", amount=Decimal(30000)),
        cart("cart_add", at(10, 20), "양말", 3, price="4500"),
        cart("cart_remove", at(10, 25), "양말", 1, price="4500"),
    ]
    batch = reduce(facts, {}, "Asia/Seoul")
    assert [(e.profile_id, e.at) for e in batch.emptied] == [(SHOPPER, at(10, 10))]
    [socks] = batch.cart
    assert (socks.product_id, socks.quantity, socks.price, socks.added_at) == (
        "양말",
        2,
        Decimal(4500),
        at(10, 20),
    )
    assert batch.cart_touched == [SHOPPER]


def test_each_product_and_coupon_is_one_row_with_the_latest_details() -> None:
    views = [
        Fact(SHOPPER, at(10), kind="product_view", product_id="p1", label="겨울 코트", category="outer"),
        Fact(SHOPPER, at(11), kind="product_view", product_id="p1", label=None, brand="다시"),
    ]
    coupons = [
        Fact(SHOPPER, at(9), kind="coupon", product_id="WELCOME", label="첫 구매 10%"),
        Fact(SHOPPER, at(12), kind="coupon", product_id="WELCOME", expires_at=at(0, day=30)),
    ]
    batch = reduce(views + coupons, {}, "Asia/Seoul")
    [view] = batch.views
    assert (view.name, view.category, view.brand, view.views) == ("겨울 코트", "outer", "다시", 2)
    assert (view.first_viewed_at, view.last_viewed_at) == (at(10), at(11))
    [coupon] = batch.coupons
    assert (coupon.name, coupon.expires_at, coupon.issued_at) == (None, at(0, day=30), at(12))
