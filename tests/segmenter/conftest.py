"""Segmenter test helpers: two workspaces, a scripted history sent through the ingest app (tests may
drive other services' apps; production code never imports across services), and clients of the
segmenter app on the same frozen clock (2026-11-23 10:00 in Seoul, a Monday)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest_asyncio

from services.ingest.main import create_app as create_ingest_app
from services.segmenter.main import create_app as create_segmenter_app
from shared.testing.fixtures import serve

KST = timezone(timedelta(hours=9))


def at(month: int, day: int, hour: int, minute: int = 0) -> str:
    return datetime(2026, month, day, hour, minute, tzinfo=KST).isoformat()


def identify(user: str, when: str, **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": user, "timestamp": when, "traits": traits}


def page(user: str, when: str, url: str) -> dict[str, Any]:
    return {"type": "page", "userId": user, "timestamp": when, "properties": {"url": url}}


def track(user: str, when: str, event: str, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "userId": user, "timestamp": when, "event": event, "properties": properties}


def visits(user: str, count: int) -> list[dict[str, Any]]:
    """`count` visits (an hour apart, so each is a new visit) on 2026-11-10 from 09:00."""
    return [page(user, at(11, 10, 9 + i), "https://dasi.shop/") for i in range(count)]


HISTORY_A = [
    # 김다시: a member and channel friend with a cart she left yesterday
    identify(
        "u-cart",
        at(11, 1, 9),
        name="김다시",
        member=True,
        kakao_channel_friend=True,
        gender="female",
        birthdate="1990-05-01",
        region="서울특별시 강남구",
        grade="VIP",
        points=1200,
        tags=["피부고민", "건성"],
        signed_up_at="2026-03-17",
        consents={"sms": True, "kakao": False, "night": False},
    ),
    page("u-cart", at(11, 22, 14), "https://dasi.shop/products/P1"),
    track(
        "u-cart",
        at(11, 22, 14, 1),
        "Product Viewed",
        product_id="P1",
        name="수분크림",
        price=25000,
        category="스킨케어",
        brand="다시랩",
    ),
    track(
        "u-cart",
        at(11, 22, 14, 2),
        "Product Added",
        product_id="P1",
        name="수분크림",
        price=25000,
        quantity=1,
    ),
    # 이단골: ten visits, 350,000 KRW spent on the 20th, 26 tomorrow
    identify(
        "u-buyer", at(11, 1, 9), name="이단골", gender="male", birthdate="2000-11-24", region="부산광역시"
    ),
    *visits("u-buyer", 10),
    track("u-buyer", at(11, 20, 12), "Signed In"),
    track(
        "u-buyer",
        at(11, 20, 12, 5),
        "Order Completed",
        order_id="ORD-1",
        total=350000,
        products=[{"product_id": "P2", "category": "선케어"}],
    ),
    track("u-buyer", at(11, 21, 12), "Product Added", product_id="P3", name="토너", price=18000, quantity=2),
    # 박기획: the promo page three times today
    page("u-promo", at(11, 23, 0, 10), "https://dasi.shop/promo?utm_source=kakao"),
    page("u-promo", at(11, 23, 0, 20), "https://dasi.shop/promo"),
    page("u-promo", at(11, 23, 9, 0), "https://dasi.shop/promo"),
    # 최늦음: the promo page at 23:50 yesterday and twice after midnight: two views today
    page("u-late", at(11, 22, 23, 50), "https://dasi.shop/promo"),
    page("u-late", at(11, 23, 0, 10), "https://dasi.shop/promo"),
    page("u-late", at(11, 23, 0, 20), "https://dasi.shop/promo"),
    # 정휴면: last login in March, a coupon that expires the day after tomorrow
    identify("u-dormant", at(3, 1, 9), name="정휴면", member=True, consents={"sms": True, "night": True}),
    track("u-dormant", at(3, 10, 20), "Signed In"),
    track(
        "u-dormant",
        at(11, 21, 10),
        "Coupon Issued",
        coupon_id="WELCOME10",
        coupon_name="신규 10% 할인",
        expires_at=at(11, 25, 23, 59),
    ),
]

# workspace B: the same user ids doing everything, so any leak into A's answers shows
HISTORY_B = [
    identify("u-cart", at(11, 1, 9), member=True, gender="female", kakao_channel_friend=True),
    track("u-cart", at(11, 22, 14), "Product Added", product_id="P1", price=25000),
    *[page("u-other", at(11, 23, 1, i), "https://dasi.shop/promo") for i in range(5)],
    track("u-other", at(3, 1, 9), "Signed In"),
]

ALL_A = {"u-cart", "u-buyer", "u-promo", "u-late", "u-dormant"}


def write_key(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def secret_key(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Shop:
    id: Any
    api: httpx.AsyncClient  # the segmenter, with the shop's secret key
    write_key: str = ""

    async def estimate(self, definition: dict[str, Any]) -> int:
        response = await self.api.post("/v1/segments/estimate", json=definition)
        assert response.status_code == 200, response.text
        return int(response.json()["count"])

    async def users(self, definition: dict[str, Any]) -> set[str]:
        """Who matches (user ids), checked against the estimate."""
        response = await self.api.post("/v1/segments/preview", params={"limit": 100}, json=definition)
        assert response.status_code == 200, response.text
        found = {item["user_id"] for item in response.json()["items"]}
        assert await self.estimate(definition) == len(found)
        return found

    async def users_of(self, condition: dict[str, Any]) -> set[str]:
        return await self.users({"include": condition})


async def _send(
    app_client: httpx.AsyncClient, key: str, history: list[dict[str, Any]], prefix: str = "m"
) -> None:
    batch = [{**m, "messageId": f"{prefix}-{i}"} for i, m in enumerate(history)]
    response = await app_client.post("/v1/batch", json={"batch": batch}, headers=write_key(key))
    assert response.status_code == 200, response.text
    assert not response.json().get("rejected"), response.text


@pytest_asyncio.fixture
async def shops(settings, clock, db, redis, make_workspace) -> AsyncIterator[tuple[Shop, Shop]]:
    """Workspaces A and B with their histories sent, and segmenter clients for each."""
    a = await make_workspace("다시 스토어")
    b = await make_workspace("다른 스토어")
    async with serve(create_ingest_app(settings, clock=clock)) as ingest:
        await _send(ingest, a.write_key, HISTORY_A)
        await _send(ingest, b.write_key, HISTORY_B)
    async with (
        serve(create_segmenter_app(settings, clock=clock), headers=secret_key(a.secret_key)) as api_a,
        serve(create_segmenter_app(settings, clock=clock), headers=secret_key(b.secret_key)) as api_b,
    ):
        yield Shop(a.workspace.id, api_a, a.write_key), Shop(b.workspace.id, api_b, b.write_key)


@pytest_asyncio.fixture
async def shop(shops: tuple[Shop, Shop]) -> Shop:
    return shops[0]


async def send(settings: Any, clock: Any, shop: Shop, history: list[dict[str, Any]], prefix: str) -> None:
    """More of a shop's history, through the ingest app (messageIds `prefix`-n must be new)."""
    async with serve(create_ingest_app(settings, clock=clock)) as ingest:
        await _send(ingest, shop.write_key, history, prefix)
