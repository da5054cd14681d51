"""The dispatcher service. Run: uvicorn services.dispatcher.main:create_app --factory --port 8004."""

from __future__ import annotations

from fastapi import FastAPI

from shared.app import create_service_app
from shared.clock import Clock
from shared.settings import Settings


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    return create_service_app(
        "dispatcher",
        description="Renders and delivers each message on the best channel that reaches, with fallback.",
        settings=settings,
        clock=clock,
    )
