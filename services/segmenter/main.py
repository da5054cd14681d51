"""The segmenter service. Run: uvicorn services.segmenter.main:create_app --factory --port 8002."""

from __future__ import annotations

from fastapi import FastAPI

from shared.app import create_service_app
from shared.clock import Clock
from shared.settings import Settings


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    return create_service_app(
        "segmenter",
        description="Audiences a marketer can describe, estimate instantly and keep current.",
        settings=settings,
        clock=clock,
    )
