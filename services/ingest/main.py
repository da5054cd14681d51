"""The ingest service. Run: uvicorn services.ingest.main:create_app --factory --port 8001."""

from __future__ import annotations

from fastapi import FastAPI

from shared.app import create_service_app
from shared.clock import Clock
from shared.settings import Settings


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    return create_service_app(
        "ingest",
        description="Collects what shoppers do (Segment-compatible tracking API); keeps profiles current.",
        settings=settings,
        clock=clock,
    )
