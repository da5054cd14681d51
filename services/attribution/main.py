"""The attribution service. Run: uvicorn services.attribution.main:create_app --factory --port 8005."""

from __future__ import annotations

from fastapi import FastAPI

from shared.app import create_service_app
from shared.clock import Clock
from shared.settings import Settings


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    return create_service_app(
        "attribution",
        description="Tracked links, conversions and the revenue each campaign earned against its holdout.",
        settings=settings,
        clock=clock,
    )
