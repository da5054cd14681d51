"""The segmenter service. Run: uvicorn services.segmenter.main:create_app --factory --port 8002."""

from __future__ import annotations

from fastapi import FastAPI

from services.segmenter.api import router as segments_router
from services.segmenter.cohorts_api import router as cohorts_router
from services.segmenter.errors import install_definition_paths
from shared.app import create_service_app
from shared.clock import Clock
from shared.settings import Settings


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    app = create_service_app(
        "segmenter",
        description="Audiences a marketer can describe, estimate instantly and keep current.",
        routers=[segments_router, cohorts_router],
        settings=settings,
        clock=clock,
        openapi_tags=[
            {
                "name": "segments",
                "description": "Segment definitions, estimates, previews, saved segments, memberships",
            },
            {"name": "cohorts", "description": "Static lists of profiles (member CSV or user ids)"},
        ],
    )
    install_definition_paths(app)
    return app
