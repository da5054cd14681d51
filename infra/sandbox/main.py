"""The provider sandbox (port 8010): stands in for the channel providers in tests and in the local
stack, speaking their wire formats over real HTTP.

    NHN Cloud KakaoTalk Bizmessage   /alimtalk/v2.3/..., /friendtalk/v2.4/..., /brand-message/v1.0/...
    NHN Cloud SMS v3.0               /sms/v3.0/appKeys/{appKey}/sender/{sms|mms|ad-sms|ad-mms}
    FCM HTTP v1                      /v1/projects/{project}/messages:send
    SendGrid v3                      /v3/mail/send, /v3/messages
    scripting and inspection         /sandbox/{appkey}/...   (see /docs)

All state is in memory, partitioned per appkey (= FCM project id = email API key). Delivery reports
go to the webhook set per appkey and provider (HMAC-SHA256 signed, retried until 200) and answer
polling. Run: uvicorn infra.sandbox.main:create_app --factory --port 8010.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from infra.sandbox import control, email, fcm, nhn_kakao, nhn_sms
from infra.sandbox.delivery import Engine
from infra.sandbox.settings import SandboxSettings
from infra.sandbox.state import Provider, SandboxState, WebhookTarget
from shared.clock import Clock, SystemClock
from shared.errors import install_error_handlers
from shared.logging import configure_logging
from shared.settings import Settings, get_settings


class Health(BaseModel):
    status: str


_FCM_SEND = re.compile(r"^/v1/projects/([^/]+)/messages:send$")


class FastPath:
    """FCM sends (one HTTP call per push, the sandbox's hottest route) skip FastAPI's routing and
    dependency machinery, about 3x the calls per second; everything else goes to the app."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (
            _FCM_SEND.match(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        )
        if match is None:
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        auth = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), "")
        response = await fcm.handle_send(self.state, match.group(1), auth, b"".join(chunks))
        await response(scope, receive, send)


# the dispatcher's webhook route per sandbox provider (FCM sends no delivery reports)
WEBHOOK_ROUTES = {Provider.kakao: "nhn-kakao", Provider.sms: "nhn-sms", Provider.email: "email"}


def default_webhooks(settings: SandboxSettings) -> dict[Provider, WebhookTarget]:
    """The webhook targets every new appkey starts with (none unless DASI_SANDBOX_WEBHOOK_BASE_URL)."""
    if not settings.webhook_base_url:
        return {}
    base = settings.webhook_base_url.rstrip("/")
    return {
        provider: WebhookTarget(url=f"{base}/{route}", secret=settings.webhook_secret)
        for provider, route in WEBHOOK_ROUTES.items()
    }


def create_app(
    settings: Settings | None = None,
    clock: Clock | None = None,
    sandbox_settings: SandboxSettings | None = None,
) -> FastAPI:
    configure_logging(settings or get_settings(), "sandbox")
    sandbox_settings = sandbox_settings or SandboxSettings()
    webhooks = default_webhooks(sandbox_settings)
    state = SandboxState(clock or SystemClock(), seed=sandbox_settings.seed, default_webhooks=webhooks)
    engine = Engine(state, sandbox_settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()

    app = FastAPI(
        title="Dasi provider sandbox",
        version="0.1.0",
        description=__doc__,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "sandbox", "description": "Scripting and inspection, per appkey"},
            {"name": "nhn-kakao (wire)", "description": "NHN Cloud KakaoTalk Bizmessage"},
            {"name": "nhn-sms (wire)", "description": "NHN Cloud SMS v3.0"},
            {"name": "fcm (wire)", "description": "FCM HTTP v1"},
            {"name": "email (wire)", "description": "SendGrid v3 shape"},
            {"name": "health", "description": "Liveness and readiness probes"},
        ],
    )
    app.state.sandbox = state
    app.state.engine = engine
    install_error_handlers(app)
    app.add_middleware(FastPath, state=state)
    for router in (fcm.router, email.router, nhn_kakao.router, nhn_sms.router, control.router):  # hot first
        app.include_router(router)

    @app.get("/healthz", operation_id="sandbox_health_live", tags=["health"], response_model=Health)
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get("/readyz", operation_id="sandbox_health_ready", tags=["health"], response_model=Health)
    async def readyz() -> Health:
        return Health(status="ready")  # keeps no state of its own to wait for

    return app
