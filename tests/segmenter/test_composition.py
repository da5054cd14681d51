"""Include / exclude, nested all / any / not, the playbook segments, segments inside segments, and
workspaces that never see each other's profiles."""

from __future__ import annotations

from services.segmenter.schemas import PLAYBOOK
from tests.segmenter.conftest import ALL_A


async def test_exclude_groups_remove_their_matches(shop):
    carts = {"type": "cart_item_count", "gte": 1}
    assert await shop.users({"include": carts}) == {"u-cart", "u-buyer"}
    bought_recently = {"type": "last_purchase", "within_days": 7}
    assert await shop.users({"include": carts, "exclude": [bought_recently]}) == {"u-cart"}
    female = {"type": "gender", "value": "female"}
    assert await shop.users({"include": carts, "exclude": [bought_recently, female]}) == set()


async def test_nested_any_and_not(shop):
    definition = {
        "include": {
            "any": [
                {"all": [{"type": "member"}, {"not": {"type": "channel_friend"}}]},
                {"type": "page_viewed", "url": "https://dasi.shop/promo", "match": "prefix", "count": 3},
            ]
        }
    }
    assert await shop.users(definition) == {"u-dormant", "u-promo", "u-late"}
    assert await shop.users({"include": {"not": definition["include"]}}) == {"u-cart", "u-buyer"}


async def test_the_playbook_examples_have_their_known_answers(shop):
    answers = {
        "cart_abandoners": {"u-cart"},
        "promo_page_today": {"u-promo"},
        "loyal_big_spenders": {"u-buyer"},
        "dormant_since_march": {"u-dormant"},
    }
    for key, (_name, _text, definition) in PLAYBOOK.items():
        assert await shop.users(definition) == answers[key], key


async def test_workspace_b_never_counts_for_workspace_a(shops):
    a, b = shops
    assert await a.estimate({"include": {"type": "visit_count", "lte": 1000}}) == len(ALL_A)
    assert await b.users_of({"type": "visit_count", "lte": 1000}) == {"u-cart", "u-other"}
    promo = {"type": "page_viewed", "url": "https://dasi.shop/promo", "count": 5, "window": {"days": 0}}
    assert await a.users_of(promo) == set()
    assert await b.users_of(promo) == {"u-other"}
    assert await a.users_of({"type": "channel_friend"}) == {"u-cart"}
    assert await a.users_of({"type": "last_login", "before": "2026-03-17"}) == {"u-dormant"}
    assert await b.users_of({"type": "last_login", "before": "2026-03-17"}) == {"u-other"}


async def test_preview_pages_with_a_cursor(shop):
    everyone = {"include": {"type": "visit_count", "gte": 0}}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await shop.api.post("/v1/segments/preview", params=params, json=everyone)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 2
        seen += [item["user_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ALL_A)
    response = await shop.api.post("/v1/segments/preview", params={"limit": 100}, json=everyone)
    traits = {item["user_id"]: item["traits"] for item in response.json()["items"]}
    assert traits["u-cart"] == {
        "name": "김다시",
        "gender": "female",
        "region": "서울특별시 강남구",
        "birthdate": "1990-05-01",
        "member": True,
        "grade": "VIP",
    }
