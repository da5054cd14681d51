"""The provider sandbox (port 8010): stands in for the channel providers (Kakao, SMS, push, email)
in tests and in the local stack. This is its process and health surface; the provider wire
formats it speaks are added with the dispatcher (issue: dispatcher and provider sandbox)."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel

from shared.errors import install_error_handlers
from shared.logging import configure_logging
from shared.settings import Settings, get_settings


class Health(BaseModel):
    status: str


def create_app(settings: Settings | None = None) -> FastAPI:
    configure_logging(settings or get_settings(), "sandbox")
    app = FastAPI(title="Dasi provider sandbox", version="0.1.0")
    install_error_handlers(app)

    @app.get("/healthz", operation_id="sandbox_health_live", tags=["health"], response_model=Health)
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get("/readyz", operation_id="sandbox_health_ready", tags=["health"], response_model=Health)
    async def readyz() -> Health:
        return Health(status="ready")  # keeps no state of its own to wait for

    return app
