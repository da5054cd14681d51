"""What the send-pipeline tests share: the provider sandbox over real HTTP (one appkey per test), a
workspace with its sender profile, shoppers with consents, Korean templates, and a Dispatcher wired
to the sandbox with the test's frozen clock."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
import stamina
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatcher.main import create_app as create_dispatcher_app
from services.dispatcher.message_models import DeliveryAttempt, Message
from services.dispatcher.models import Template
from services.dispatcher.pipeline import Dispatcher
from services.dispatcher.provider_settings import ProviderSettings
from services.dispatcher.senders import create_sender_profile
from services.dispatcher.wiring import DispatchSettings, build_dispatcher, report_receiver
from services.dispatcher.worker import make_worker_settings
from services.ingest.models import Consent, Profile
from shared.clock import FrozenClock
from shared.contracts import InlineContent, SendBatch, SendRequest
from shared.db import session_scope
from shared.settings import Settings
from shared.testing.fixtures import run_worker_burst
from shared.testing.http_server import serve_http
from shared.testing.sandbox import SandboxServer
from shared.workspaces import create_workspace

WEBHOOK_SECRET = "test-webhook-secret"
SENDER_NUMBER = "15990000"
SENDER_KEY = "dasi-sandbox-sender-key"
OPT_OUT = "0801234567"


@dataclass
class Sandbox:
    url: str
    appkey: str
    client: httpx.AsyncClient

    def provider_settings(self) -> ProviderSettings:
        return ProviderSettings(
            env="test",
            nhn_kakao_base_url=self.url,
            nhn_kakao_appkey=self.appkey,
            nhn_kakao_webhook_secret=WEBHOOK_SECRET,
            nhn_sms_base_url=self.url,
            nhn_sms_appkey=self.appkey,
            nhn_sms_webhook_secret=WEBHOOK_SECRET,
            fcm_base_url=self.url,
            fcm_project_id=self.appkey,
            email_base_url=self.url,
            email_api_key=self.appkey,
            email_webhook_secret=WEBHOOK_SECRET,
        )

    async def script(self, recipient: str, behaviour: str) -> None:
        r = await self.client.put(
            f"/sandbox/{self.appkey}/recipients/{recipient}", json={"behaviour": behaviour}
        )
        r.raise_for_status()

    async def provider(self, provider: str, **behaviour: Any) -> None:
        r = await self.client.put(f"/sandbox/{self.appkey}/providers/{provider}", json=behaviour)
        r.raise_for_status()

    async def webhook(self, provider: str, url: str) -> None:
        r = await self.client.put(
            f"/sandbox/{self.appkey}/webhooks/{provider}",
            json={"url": url, "secret": WEBHOOK_SECRET, "backoff_s": 0.05},
        )
        r.raise_for_status()

    async def submissions(self, provider: str | None = None) -> list[dict[str, Any]]:
        params = {"provider": provider} if provider else {}
        r = await self.client.get(f"/sandbox/{self.appkey}/submissions", params=params)
        r.raise_for_status()
        result: list[dict[str, Any]] = r.json()
        return result

    async def messages(self, provider: str | None = None, **params: str) -> list[dict[str, Any]]:
        if provider:
            params["provider"] = provider
        r = await self.client.get(f"/sandbox/{self.appkey}/messages", params=params)
        r.raise_for_status()
        result: list[dict[str, Any]] = r.json()
        return result


@pytest.fixture(autouse=True)
def no_retry_waits() -> Iterator[None]:
    """Provider calls fail at once instead of backing off (import it into a test module to apply)."""
    stamina.set_testing(True, attempts=1)
    yield
    stamina.set_testing(False)


@pytest_asyncio.fixture
async def sandbox(sandbox_server: SandboxServer, clock: FrozenClock) -> AsyncIterator[Sandbox]:
    """A fresh appkey on the session's sandbox server (shared.testing.sandbox), its clock at the
    test's "now" (Kakao hours), with the helpers these tests use."""
    async with httpx.AsyncClient(base_url=sandbox_server.base_url, timeout=10) as client:
        handle = Sandbox(sandbox_server.base_url, f"pipeline-{uuid.uuid4().hex[:16]}", client)
        r = await client.put(f"/sandbox/{handle.appkey}/clock", json={"now": clock.now().isoformat()})
        r.raise_for_status()
        yield handle
        await client.delete(f"/sandbox/{handle.appkey}")


@dataclass
class Shop:
    workspace_id: uuid.UUID
    secret_key: str
    templates: dict[str, uuid.UUID] = field(default_factory=dict)


async def make_shop(db: async_sessionmaker[AsyncSession], now: datetime, name: str = "다시 스토어") -> Shop:
    async with session_scope(db) as session:
        ws = await create_workspace(session, name)
        await create_sender_profile(
            session,
            ws.workspace.id,
            now,
            {
                "name": "기본",
                "store_name": name,
                "sender_numbers": [{"number": SENDER_NUMBER, "verified": True}],
                "opt_out_number": OPT_OUT,
                "opt_out_verified": True,
                "kakao_sender_key": SENDER_KEY,
                "email_from": "shop@dasi.shop",
                "email_from_name": name,
                "email_verified": True,
            },
        )
        shop = Shop(ws.workspace.id, ws.secret_key)
        for key, channel, is_ad, body, extra in (
            (
                "friendtalk_ad",
                "friendtalk",
                True,
                "{{ profile.name }}님, 장바구니에 담은 {{ product.name }} 잊지 않으셨죠?",
                {},
            ),
            (
                "alimtalk",
                "alimtalk",
                False,
                "{{ profile.name }}님, 주문하신 {{ product.name }}이(가) 발송되었습니다.",
                {"alimtalk_template_code": "ORDER_SHIPPED", "review_state": "approved"},
            ),
            (
                "alimtalk_unapproved",
                "alimtalk",
                False,
                "{{ profile.name }}님, 쿠폰이 곧 만료됩니다.",
                {"alimtalk_template_code": "COUPON_EXPIRY", "review_state": "under_review"},
            ),
            ("sms_ad", "sms", True, "{{ profile.name }}님, 주말 특가 쿠폰이 도착했어요!", {}),
            (
                "sms_info",
                "sms",
                False,
                "{{ profile.name }}님, 주문하신 {{ product.name }}이(가) 발송되었습니다.",
                {},
            ),
            (
                "push_ad",
                "push",
                True,
                "{{ profile.name }}님, 장바구니 상품이 곧 품절돼요",
                {"subject": "품절 임박"},
            ),
            (
                "email_ad",
                "email",
                True,
                "{{ profile.name }}님을 위한 주말 특가",
                {"subject": "주말 특가 안내"},
            ),
        ):
            tid = uuid.uuid4()
            session.add(
                Template(
                    id=tid,
                    workspace_id=shop.workspace_id,
                    name=key,
                    channel=channel,
                    is_ad=is_ad,
                    body=body,
                    buttons=[],
                    variables={"product.name": "수분크림"},
                    review_history=[],
                    created_at=now,
                    updated_at=now,
                    **extra,
                )
            )
            shop.templates[key] = tid
        await session.flush()
    return shop


async def make_shopper(
    db: async_sessionmaker[AsyncSession],
    shop: Shop,
    now: datetime,
    *,
    phone: str = "01012345678",
    name: str = "김민지",
    friend: bool = True,
    consents: Sequence[str] = ("sms", "kakao", "push", "email"),
    push_token: str | None = None,
    email: str | None = None,
) -> uuid.UUID:
    pid = uuid.uuid4()
    traits: dict[str, Any] = {"name": name, "phone": phone, "kakao_channel_friend": friend}
    if push_token:
        traits["push_token"] = push_token
    if email:
        traits["email"] = email
    async with session_scope(db) as session:
        session.add(
            Profile(id=pid, workspace_id=shop.workspace_id, user_id=f"member-{pid.hex[:8]}", traits=traits)
        )
        await session.flush()
        for topic in consents:
            session.add(
                Consent(
                    profile_id=pid, topic=topic, workspace_id=shop.workspace_id, granted=True, given_at=now
                )
            )
    return pid


def request(
    key: str,
    channels: Sequence[str],
    *,
    profile_id: uuid.UUID | None = None,
    to: str | None = None,
    template_id: uuid.UUID | None = None,
    templates: dict[str, uuid.UUID] | None = None,
    content: str | None = None,
    is_ad: bool = False,
    night_policy: str = "defer",
    campaign_id: uuid.UUID | None = None,
) -> SendRequest:
    return SendRequest.model_validate(
        {
            "idempotency_key": key,
            "profile_id": profile_id,
            "to": to,
            "channels": list(channels),
            "template_id": template_id,
            "templates": templates or {},
            "content": InlineContent(body=content) if content else None,
            "variables": {"product.name": "수분크림"},
            "is_ad": is_ad,
            "night_policy": night_policy,
            "campaign_id": campaign_id,
        }
    )


def batch(shop: Shop, *requests: SendRequest) -> SendBatch:
    return SendBatch(workspace_id=shop.workspace_id, messages=list(requests))


@asynccontextmanager
async def dispatcher_for(
    settings: Settings,
    db: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
    sandbox: Sandbox,
    **config: Any,
) -> AsyncIterator[Dispatcher]:
    dispatcher, close = build_dispatcher(
        settings, db, clock, sandbox.provider_settings(), DispatchSettings(**config)
    )
    try:
        yield dispatcher
    finally:
        await close()


@asynccontextmanager
async def dispatcher_http(settings: Settings, clock: FrozenClock, sandbox: Sandbox) -> AsyncIterator[str]:
    """The dispatcher app over real HTTP, the sandbox's webhooks pointed at it; yields its URL."""
    app = create_dispatcher_app(settings, clock)
    async with serve_http(app) as url:
        resources = app.state.resources
        app.state.report_receiver = report_receiver(
            settings, resources.sessionmaker, clock, sandbox.provider_settings()
        )
        for sandbox_name, ours in (("kakao", "nhn-kakao"), ("sms", "nhn-sms"), ("email", "email")):
            await sandbox.webhook(sandbox_name, f"{url}/v1/webhooks/{ours}")
        yield url


async def run_worker(settings: Settings, clock: FrozenClock, sandbox: Sandbox, **config: Any) -> None:
    """A real arq worker on the `dispatch` queue, in burst mode."""
    worker = make_worker_settings(
        settings,
        clock=clock,
        provider_settings=sandbox.provider_settings(),
        dispatch_settings=DispatchSettings(**config),
    )
    await run_worker_burst(worker, settings, cron_jobs=[])  # the crons are called directly where tested


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def status_is(db: async_sessionmaker[AsyncSession], message_id: uuid.UUID, *statuses: str) -> bool:
    return (await message_of(db, message_id)).status in statuses


async def message_of(db: async_sessionmaker[AsyncSession], message_id: uuid.UUID) -> Message:
    async with session_scope(db) as session:
        found = await session.get(Message, message_id)
        assert found is not None
        return found


async def attempts_of(db: async_sessionmaker[AsyncSession], message_id: uuid.UUID) -> list[DeliveryAttempt]:
    async with session_scope(db) as session:
        rows = await session.execute(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.message_id == message_id)
            .order_by(DeliveryAttempt.seq)
        )
        return list(rows.scalars())
