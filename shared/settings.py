"""Settings for every Dasi process, read from the environment with the DASI_ prefix."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-only-insecure-secret"  # noqa: S105 - refused outside dev, see below
PROJECT_ROOT = Path(__file__).resolve().parent.parent

SERVICE_PORTS: dict[str, int] = {
    "ingest": 8001,
    "segmenter": 8002,
    "scheduler": 8003,
    "dispatcher": 8004,
    "attribution": 8005,
    "sandbox": 8010,
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DASI_", env_file=None, extra="ignore")

    env: Literal["dev", "test", "production"] = "dev"
    # None means: the embedded default (servers from wheels, data under state_dir)
    database_url: str | None = None
    redis_url: str | None = None
    state_dir: Path = PROJECT_ROOT / ".dasi"

    secret_key: str = DEV_SECRET
    log_format: Literal["console", "json"] = "console"
    log_level: str = "INFO"

    db_pool_size: int = Field(default=10, ge=1)
    # ingest stores the tracking requests that gather while a transaction runs in the next one
    # (services/ingest/group_commit.py): at most this many events in one, this many at once
    ingest_group_max_events: int = Field(default=2000, ge=1)
    ingest_group_running: int = Field(default=1, ge=1)
    # arq polls Redis for new jobs; its 0.5 s default puts ~260 ms into every hop
    worker_poll_delay_s: float = Field(default=0.05, gt=0)
    events_stream: str = "dasi:events"
    # the ingest worker trims from the stream what every consumer group acked, and whatever is older
    # than this even if a group has not (shared/streams.trim_finished)
    events_stream_keep_hours: float = Field(default=24, gt=0)
    # ingest drops whole months of events older than this (None: keep everything)
    events_retention_months: int | None = Field(default=None, ge=1)
    # a repeated messageId is ignored for at least this long after it was first received, at most
    # twice that (services/ingest/dedupe.py)
    dedupe_window_hours: float = Field(default=168, gt=0)

    @model_validator(mode="after")
    def _refuse_default_secret_outside_dev(self) -> Settings:
        if self.env == "production" and self.secret_key == DEV_SECRET:
            raise ValueError("DASI_SECRET_KEY must be set to a real secret when DASI_ENV=production")
        return self

    def require_database_url(self) -> str:
        if not self.database_url:
            raise RuntimeError(
                "DASI_DATABASE_URL is not set; start the stack with `dasi up` (which starts the "
                "embedded servers) or set it to a PostgreSQL URL"
            )
        return self.database_url

    def require_redis_url(self) -> str:
        if not self.redis_url:
            raise RuntimeError(
                "DASI_REDIS_URL is not set; start the stack with `dasi up` or set it to a Redis URL"
            )
        return self.redis_url


@lru_cache
def get_settings() -> Settings:
    return Settings()
