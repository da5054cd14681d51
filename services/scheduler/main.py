"""The scheduler service. Run: uvicorn services.scheduler.main:create_app --factory --port 8003."""

from __future__ import annotations

from fastapi import FastAPI

from shared.app import create_service_app
from shared.clock import Clock
from shared.settings import Settings


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    return create_service_app(
        "scheduler",
        description="Campaigns, schedules and triggers: who gets which message, and when it may be sent.",
        settings=settings,
        clock=clock,
    )
