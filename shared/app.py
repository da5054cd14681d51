"""The one way a Dasi service app is built: lifespan-owned resources, request ids, problem+json
errors, health routes and the workspace route. A service's main.py adds only its own routers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import structlog
from fastapi import APIRouter, FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import health, workspace_api
from shared.clock import Clock, SystemClock
from shared.db import create_engine, create_sessionmaker
from shared.dependencies import Resources
from shared.errors import install_error_handlers, problem_responses
from shared.logging import configure_logging
from shared.redis import create_redis
from shared.runtime import tune_gc
from shared.settings import SERVICE_PORTS, Settings, get_settings

log = structlog.get_logger(__name__)


class RequestIdMiddleware:
    """Binds `request_id` (the caller's X-Request-ID, or a new one) to every log line of the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")[:64]
        request_id = incoming or uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode("latin-1")))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("request_id", "workspace_id")


def create_service_app(
    service: str,
    *,
    description: str,
    routers: Sequence[APIRouter] = (),
    settings: Settings | None = None,
    clock: Clock | None = None,
    openapi_tags: list[dict[str, str]] | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings, service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        redis = create_redis(settings)
        app.state.resources = Resources(
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            redis=redis,
            clock=clock or SystemClock(),
        )
        tune_gc()
        log.info("service_started", port=SERVICE_PORTS.get(service))
        try:
            yield
        finally:
            await redis.aclose()
            await engine.dispose()

    app = FastAPI(
        title=f"Dasi {service}",
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        responses=problem_responses(500),
        openapi_tags=[
            *(openapi_tags or []),
            {"name": "workspace", "description": "The workspace the calling key belongs to"},
            {"name": "health", "description": "Liveness and readiness probes"},
        ],
    )
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    for router in (*routers, workspace_api.router, health.router):
        app.include_router(router)
    return app
