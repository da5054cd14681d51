"""Fixtures for the provider sandbox: one real sandbox server per test session (uvicorn on a free
port, in the session's event loop), a fresh appkey per test, and a webhook receiver.

    async def test_x(sandbox: Sandbox, webhook_receiver: WebhookReceiver) -> None:
        await sandbox.script("01012345678", "not_friend")
        await sandbox.webhook("kakao", webhook_receiver.url, secret="s")
        settings = ProviderSettings(**sandbox.provider_kwargs(nhn_kakao_webhook_secret="s"))
        ...
        assert len(await sandbox.submissions("kakao")) == 1

Tests never share an appkey, so they may run concurrently against the same server. Webhook retries
back off 10 ms in tests (DASI_SANDBOX_WEBHOOK_BACKOFF_S in the real process).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest_asyncio
from starlette.types import Receive, Scope, Send

from infra.sandbox.main import create_app
from infra.sandbox.settings import SandboxSettings
from shared.clock import FrozenClock
from shared.settings import get_settings
from shared.testing.http_server import serve_http

TEST_SANDBOX_SETTINGS = SandboxSettings(
    webhook_max_attempts=5, webhook_backoff_s=0.01, webhook_flush_ms=5, power_off_redelivery_ms=50, seed=7
)


@dataclass
class Sandbox:
    """One test's view of the sandbox: its own appkey (also FCM project and email API key)."""

    base_url: str
    appkey: str
    secret_key: str
    client: httpx.AsyncClient

    async def _ok(self, response: httpx.Response) -> Any:
        response.raise_for_status()
        return response.json() if response.content else None

    async def script(self, recipient: str, behaviour: str) -> None:
        await self._ok(
            await self.client.put(
                f"/sandbox/{self.appkey}/recipients/{recipient}", json={"behaviour": behaviour}
            )
        )

    async def provider(self, provider: str, **behaviour: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self._ok(
            await self.client.put(f"/sandbox/{self.appkey}/providers/{provider}", json=behaviour)
        )
        return result

    async def webhook(
        self,
        provider: str,
        url: str,
        secret: str,
        max_attempts: int | None = None,
        backoff_s: float | None = None,
    ) -> None:
        body = {"url": url, "secret": secret, "max_attempts": max_attempts, "backoff_s": backoff_s}
        await self._ok(await self.client.put(f"/sandbox/{self.appkey}/webhooks/{provider}", json=body))

    async def register(self, **lists: Any) -> None:
        await self._ok(await self.client.put(f"/sandbox/{self.appkey}/registrations", json=lists))

    async def set_clock(self, now: datetime | None) -> None:
        body = {"now": now.isoformat() if now else None}
        await self._ok(await self.client.put(f"/sandbox/{self.appkey}/clock", json=body))

    async def submissions(self, provider: str | None = None) -> list[dict[str, Any]]:
        params = {"provider": provider} if provider else {}
        result: list[dict[str, Any]] = await self._ok(
            await self.client.get(f"/sandbox/{self.appkey}/submissions", params=params)
        )
        return result

    async def messages(self, **filters: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._ok(
            await self.client.get(f"/sandbox/{self.appkey}/messages", params=filters)
        )
        return result

    async def costs(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._ok(await self.client.get(f"/sandbox/{self.appkey}/costs"))
        return result

    async def webhook_log(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._ok(
            await self.client.get(f"/sandbox/{self.appkey}/webhook-log")
        )
        return result

    async def opt_out_080(self, recipient_no: str, unsubscribe_no: str = "0801234567") -> None:
        body = {"recipient_no": recipient_no, "unsubscribe_no": unsubscribe_no}
        await self._ok(await self.client.post(f"/sandbox/{self.appkey}/sms/unsubscribe", json=body))

    async def email_unsubscribe(self, email: str) -> None:
        await self._ok(
            await self.client.post(f"/sandbox/{self.appkey}/email/unsubscribe", json={"email": email})
        )

    def provider_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for the dispatcher's ProviderSettings: every provider at this sandbox."""
        kwargs: dict[str, Any] = {
            "nhn_kakao_base_url": self.base_url,
            "nhn_kakao_appkey": self.appkey,
            "nhn_kakao_secret_key": self.secret_key,
            "nhn_sms_base_url": self.base_url,
            "nhn_sms_appkey": self.appkey,
            "nhn_sms_secret_key": self.secret_key,
            "fcm_base_url": self.base_url,
            "fcm_project_id": self.appkey,
            "fcm_access_token": self.secret_key,
            "email_base_url": self.base_url,
            "email_api_key": self.appkey,
        }
        return {**kwargs, **overrides}


@dataclass
class SandboxServer:
    base_url: str


@dataclass
class ReceivedCall:
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class WebhookReceiver:
    """A real HTTP endpoint for webhooks: records every call and answers the scripted statuses
    first (e.g. [500, 500] then 200s)."""

    url: str
    calls: list[ReceivedCall] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def accepted(self) -> list[ReceivedCall]:
        return [c for c in self.calls if c.status == 200]

    async def wait_for(
        self, count: int, *, accepted: bool = True, timeout_s: float = 5.0
    ) -> list[ReceivedCall]:
        """Wait until `count` calls arrived (answered 200 when `accepted`)."""
        async with asyncio.timeout(timeout_s):
            while True:
                found = self.accepted if accepted else self.calls
                if len(found) >= count:
                    return found
                self.changed.clear()
                await self.changed.wait()


class _ReceiverApp:
    def __init__(self) -> None:
        self.receivers: dict[str, WebhookReceiver] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        token = scope["path"].rsplit("/", 1)[-1]
        receiver = self.receivers.get(token)
        status = 404
        if receiver is not None:
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            receiver.calls.append(ReceivedCall(headers, body, status))
            receiver.changed.set()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


@dataclass
class _ReceiverServer:
    base_url: str
    app: _ReceiverApp


@pytest_asyncio.fixture(scope="session")
async def sandbox_server() -> AsyncIterator[SandboxServer]:
    from shared.testing.plugin import DEFAULT_TEST_NOW

    # the tests' default "now" (10:00 in Seoul, inside Kakao's hours); a test moves its own appkey's clock
    app = create_app(
        get_settings(), clock=FrozenClock(DEFAULT_TEST_NOW), sandbox_settings=TEST_SANDBOX_SETTINGS
    )
    async with serve_http(app) as base_url:
        yield SandboxServer(base_url)


@pytest_asyncio.fixture
async def sandbox(sandbox_server: SandboxServer) -> AsyncIterator[Sandbox]:
    """A fresh appkey on the session's sandbox; its secret key is enforced."""
    appkey = f"test-{uuid.uuid4().hex[:16]}"
    async with httpx.AsyncClient(base_url=sandbox_server.base_url, timeout=10) as client:
        handle = Sandbox(sandbox_server.base_url, appkey, f"secret-{uuid.uuid4().hex[:12]}", client)
        await handle.register(secret_key=handle.secret_key)
        yield handle
        await client.delete(f"/sandbox/{appkey}")


@pytest_asyncio.fixture(scope="session")
async def _webhook_receiver_server() -> AsyncIterator[_ReceiverServer]:
    app = _ReceiverApp()
    async with serve_http(app, lifespan="off") as base_url:
        yield _ReceiverServer(base_url, app)


@pytest_asyncio.fixture
async def webhook_receiver(_webhook_receiver_server: _ReceiverServer) -> AsyncIterator[WebhookReceiver]:
    token = uuid.uuid4().hex
    receiver = WebhookReceiver(f"{_webhook_receiver_server.base_url}/hooks/{token}")
    _webhook_receiver_server.app.receivers[token] = receiver
    yield receiver
    _webhook_receiver_server.app.receivers.pop(token, None)


__all__ = [
    "ReceivedCall",
    "Sandbox",
    "SandboxServer",
    "WebhookReceiver",
    "_webhook_receiver_server",
    "sandbox",
    "sandbox_server",
    "webhook_receiver",
]
