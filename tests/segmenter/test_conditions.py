"""Each condition family against the scripted history of tests/segmenter/conftest.py, whose answers
are known. Now is 2026-11-23 10:00 in Seoul."""

from __future__ import annotations

import pytest

from tests.segmenter.conftest import ALL_A


async def test_members_channel_friends_and_consent(shop):
    assert await shop.users_of({"type": "member"}) == {"u-cart", "u-dormant"}
    assert await shop.users_of({"type": "member", "is_member": False}) == {"u-buyer", "u-promo", "u-late"}
    assert await shop.users_of({"type": "channel_friend"}) == {"u-cart"}
    assert await shop.users_of({"type": "channel_friend", "is_friend": False}) == ALL_A - {"u-cart"}
    assert await shop.users_of({"type": "marketing_consent", "channel": "sms"}) == {"u-cart", "u-dormant"}
    assert await shop.users_of({"type": "marketing_consent", "channel": "kakao"}) == set()
    no_kakao = {"type": "marketing_consent", "channel": "kakao", "granted": False}
    assert await shop.users_of(no_kakao) == ALL_A  # refused or never asked
    assert await shop.users_of({"type": "night_consent"}) == {"u-dormant"}


async def test_gender_age_and_region(shop):
    assert await shop.users_of({"type": "gender", "value": "female"}) == {"u-cart"}
    assert await shop.users_of({"type": "age", "min_age": 30, "max_age": 39}) == {"u-cart"}
    # born 2000-11-24: 25 today, 26 tomorrow
    assert await shop.users_of({"type": "age", "max_age": 25}) == {"u-buyer"}
    assert await shop.users_of({"type": "age", "min_age": 26}) == {"u-cart"}
    assert await shop.users_of({"type": "region", "regions": ["서울", "대구"]}) == {"u-cart"}


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("eq", "VIP", {"u-cart"}),
        ("ne", "VIP", ALL_A - {"u-cart"}),
        ("in", ["VIP", "GOLD"], {"u-cart"}),
        ("exists", True, {"u-cart"}),
        ("exists", False, ALL_A - {"u-cart"}),
    ],
)
async def test_custom_trait_equality_and_presence(shop, op, value, expected):
    assert await shop.users_of({"type": "trait", "key": "grade", "op": op, "value": value}) == expected


async def test_custom_trait_contains_numbers_and_dates(shop):
    async def trait(key, op, value):
        return await shop.users_of({"type": "trait", "key": key, "op": op, "value": value})

    assert await trait("tags", "contains", "건성") == {"u-cart"}
    assert await trait("name", "contains", "단골") == {"u-buyer"}
    assert await trait("points", "gte", 1200) == {"u-cart"}
    assert await trait("points", "gt", 1200) == set()
    assert await trait("points", "lt", 5000) == {"u-cart"}
    assert await trait("signed_up_at", "before", "2026-03-18") == {"u-cart"}
    assert await trait("signed_up_at", "before", "2026-03-17") == set()
    assert await trait("signed_up_at", "after", "2026-03-16") == {"u-cart"}
    assert await trait("signed_up_at", "after", "2026-03-17") == set()
    assert await trait("signed_up_at", "after", "2026-03-16T23:00:00+09:00") == {"u-cart"}


async def test_visits(shop):
    assert await shop.users_of({"type": "visit_count", "gte": 10}) == {"u-buyer"}
    few = await shop.users_of({"type": "visit_count", "lte": 1})
    assert few == {"u-cart", "u-dormant"}  # u-dormant never visited: 0 visits
    # u-promo's 09:00 view began a second visit; u-late's 00:10 a new one (a new local day)
    assert await shop.users_of({"type": "visit_count", "gte": 2, "lte": 2}) == {"u-promo", "u-late"}
    assert await shop.users_of({"type": "last_visit", "within_days": 0}) == {"u-promo", "u-late"}
    assert await shop.users_of({"type": "last_visit", "within_days": 1}) == {"u-promo", "u-late", "u-cart"}
    lapsed = await shop.users_of({"type": "last_visit", "not_within_days": 1})
    assert lapsed == {"u-buyer", "u-dormant"}
    assert await shop.users_of({"type": "first_visit", "within_days": 0}) == {"u-promo"}
    assert await shop.users_of({"type": "session_page_views", "gte": 2}) == {"u-late"}


async def test_promo_page_today_is_counted_from_local_midnight(shop):
    def promo(count, window):
        return {
            "type": "page_viewed",
            "url": "https://dasi.shop/promo",
            "match": "prefix",
            "count": count,
            "window": window,
        }

    # u-late's 23:50 view was yesterday in Seoul (14:50 UTC on the same UTC day as 00:10)
    assert await shop.users_of(promo(3, {"days": 0})) == {"u-promo"}
    assert await shop.users_of(promo(2, {"days": 0})) == {"u-promo", "u-late"}
    assert await shop.users_of(promo(3, {"days": 1})) == {"u-promo", "u-late"}
    assert await shop.users_of(promo(3, {"from": "2026-11-22", "to": "2026-11-22"})) == set()
    assert await shop.users_of(promo(1, {"from": "2026-11-22", "to": "2026-11-22"})) == {"u-late"}
    exact = {"type": "page_viewed", "url": "https://dasi.shop/promo", "count": 3}
    assert await shop.users_of(exact) == {"u-late"}  # u-promo's first view had a query string
    pattern = {"type": "page_viewed", "url": "*/products/*", "match": "pattern"}
    assert await shop.users_of(pattern) == {"u-cart"}


async def test_products_viewed(shop):
    assert await shop.users_of({"type": "product_viewed", "product_id": "P1"}) == {"u-cart"}
    assert await shop.users_of({"type": "product_viewed", "category": "스킨케어", "brand": "다시랩"}) == {
        "u-cart"
    }
    assert await shop.users_of({"type": "product_viewed", "brand": "다시랩", "within_days": 0}) == set()


async def test_cart(shop):
    assert await shop.users_of({"type": "cart_item_count", "gte": 1}) == {"u-cart", "u-buyer"}
    assert await shop.users_of({"type": "cart_item_count", "gte": 2}) == {"u-buyer"}  # two of P3
    assert await shop.users_of({"type": "cart_total", "gte": 20000, "lte": 49999}) == {"u-cart", "u-buyer"}
    assert await shop.users_of({"type": "cart_total", "gte": 30000}) == {"u-buyer"}
    assert await shop.users_of({"type": "cart_last_added", "within_days": 1}) == {"u-cart"}
    assert await shop.users_of({"type": "cart_last_added", "after": "2026-11-21"}) == {"u-cart"}
    assert await shop.users_of({"type": "cart_last_added", "before": "2026-11-22"}) == {"u-buyer"}
    assert await shop.users_of({"type": "product_in_cart", "product_id": "P3"}) == {"u-buyer"}


async def test_purchases(shop):
    # the order of the 20th: within 3 days (since the 20th 00:00 local), not within 2
    assert await shop.users_of({"type": "last_purchase", "within_days": 3}) == {"u-buyer"}
    assert await shop.users_of({"type": "last_purchase", "within_days": 2}) == set()
    assert await shop.users_of({"type": "last_purchase", "not_within_days": 7}) == ALL_A - {"u-buyer"}
    assert await shop.users_of({"type": "purchase_count", "gte": 1}) == {"u-buyer"}
    assert await shop.users_of({"type": "purchase_total", "gte": 300000}) == {"u-buyer"}
    assert await shop.users_of({"type": "purchase_total", "gte": 400000}) == set()
    assert await shop.users_of({"type": "bought", "product_id": "P2"}) == {"u-buyer"}
    assert await shop.users_of({"type": "bought", "category": "선케어", "window": {"days": 2}}) == set()
    assert await shop.users_of({"type": "bought", "category": "선케어", "window": {"days": 3}}) == {"u-buyer"}


async def test_last_login_against_absolute_days(shop):
    assert await shop.users_of({"type": "last_login", "before": "2026-03-17"}) == {"u-dormant"}
    assert await shop.users_of({"type": "last_login", "before": "2026-03-10"}) == set()
    assert await shop.users_of({"type": "last_login", "after": "2026-03-17"}) == {"u-buyer"}
    assert await shop.users_of({"type": "last_login", "after": "2026-03-09", "before": "2026-03-11"}) == {
        "u-dormant"
    }


async def test_coupons_expiring(shop):
    # WELCOME10 expires on the 25th at 23:59 local: within 2 days of today, not within 1
    assert await shop.users_of({"type": "coupon", "coupon_id": "WELCOME10"}) == {"u-dormant"}
    assert await shop.users_of({"type": "coupon", "coupon_id": "WELCOME10", "expiring_within_days": 2}) == {
        "u-dormant"
    }
    assert await shop.users_of({"type": "coupon", "expiring_within_days": 1}) == set()
    assert await shop.users_of({"type": "coupon", "coupon_id": "OTHER"}) == set()


async def test_any_event_with_property_filters_in_a_window(shop):
    added = {"type": "event", "name": "Product Added"}
    assert await shop.users_of(added) == {"u-cart", "u-buyer"}
    pricey = {**added, "filters": [{"key": "price", "op": "gte", "value": 20000}]}
    assert await shop.users_of(pricey) == {"u-cart"}
    assert await shop.users_of({**added, "window": {"days": 1}}) == {"u-cart"}
    assert await shop.users_of({**added, "window": {"from": "2026-11-21", "to": "2026-11-21"}}) == {"u-buyer"}
    named = {**added, "filters": [{"key": "name", "op": "in", "value": ["토너", "립밤"]}]}
    assert await shop.users_of(named) == {"u-buyer"}
    assert await shop.users_of({**added, "count": 2}) == set()
