"""The ingest service. Run: uvicorn services.ingest.main:create_app --factory --port 8001."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from services.ingest import profiles_api
from services.ingest.api import openapi_schemas, router
from shared.app import create_service_app
from shared.clock import Clock
from shared.settings import Settings

TAGS = [
    {"name": "tracking", "description": "Segment-compatible tracking API (write key as Basic username)"},
    {
        "name": "profiles",
        "description": "Import members from CSV; read profiles and their events (secret key)",
    },
]


def _with_request_schemas(app: FastAPI) -> None:
    """The tracking routes read their bodies themselves; put their request models in the schema."""
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = default_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(openapi_schemas())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    app = create_service_app(
        "ingest",
        description="Collects what shoppers do (Segment-compatible tracking API); keeps profiles current.",
        routers=[router, profiles_api.router],
        settings=settings,
        clock=clock,
        openapi_tags=TAGS,
    )
    _with_request_schemas(app)
    return app
