"""Adapters against the real sandbox over real HTTP: one httpx client (aiohttp transport) per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from services.dispatcher.provider_settings import ProviderSettings
from services.dispatcher.providers.base import Channel, Outgoing, ProviderFallback
from services.dispatcher.providers.factory import Providers, build_http_client, build_providers
from shared.testing.sandbox import Sandbox

WEBHOOK_SECRET = "webhook-secret-for-tests"
SENDER_KEY = "dasi-sandbox-sender-key"
SEND_NO = "15990000"


@pytest_asyncio.fixture
async def providers(sandbox: Sandbox) -> AsyncIterator[Providers]:
    settings = ProviderSettings(
        **sandbox.provider_kwargs(
            nhn_kakao_webhook_secret=WEBHOOK_SECRET,
            nhn_sms_webhook_secret=WEBHOOK_SECRET,
            email_webhook_secret=WEBHOOK_SECRET,
        )
    )
    client = build_http_client(settings)
    try:
        yield build_providers(settings, client)
    finally:
        await client.aclose()


OutgoingFactory = Callable[..., Outgoing]


@pytest.fixture
def outgoing() -> OutgoingFactory:
    def make(channel: Channel = Channel.alimtalk, to: str = "01012345678", **fields: Any) -> Outgoing:
        defaults: dict[str, Any] = {
            Channel.alimtalk: {"sender": SENDER_KEY, "body": "", "template_code": "ORDER_SHIPPED"},
            Channel.friendtalk: {
                "sender": SENDER_KEY,
                "body": "김다시님, 장바구니에 담은 상품이 곧 품절돼요",
            },
            Channel.brand_message: {"sender": SENDER_KEY, "body": "(광고) 다시 스토어 신상품 입고"},
            Channel.sms: {"sender": SEND_NO, "body": "주문하신 상품이 출발했어요"},
            Channel.lms: {
                "sender": SEND_NO,
                "body": "주문하신 상품이 출발했어요. " * 5,
                "subject": "배송 안내",
            },
            Channel.push: {"sender": "dasi", "body": "장바구니를 잊으셨어요", "subject": "다시 스토어"},
            Channel.email: {
                "sender": "store@example.kr",
                "body": "쿠폰이 도착했어요",
                "subject": "주말 쿠폰",
            },
        }[channel]
        key = fields.pop("idempotency_key", f"key-{uuid.uuid4().hex}")
        return Outgoing(
            message_id=uuid.uuid4(), idempotency_key=key, channel=channel, to=to, **{**defaults, **fields}
        )

    return make


def sms_fallback(content: str = "주문하신 상품이 출발했어요", **fields: Any) -> ProviderFallback:
    return ProviderFallback(content=content, sender_no=SEND_NO, **fields)
