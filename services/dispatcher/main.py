"""The dispatcher service. Run: uvicorn services.dispatcher.main:create_app --factory --port 8004."""

from __future__ import annotations

from fastapi import FastAPI

from services.dispatcher.send_api import OPENAPI_TAGS as SEND_TAGS
from services.dispatcher.send_api import routers as send_routers
from services.dispatcher.templates_api import OPENAPI_TAGS as CONTENT_TAGS
from services.dispatcher.templates_api import routers as content_routers
from shared.app import create_service_app
from shared.clock import Clock
from shared.settings import Settings


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    return create_service_app(
        "dispatcher",
        description="Renders and delivers each message on the best channel that reaches, with fallback.",
        routers=[*content_routers, *send_routers],
        settings=settings,
        clock=clock,
        openapi_tags=[*CONTENT_TAGS, *SEND_TAGS],
    )
