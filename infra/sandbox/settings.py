"""Sandbox settings (DASI_SANDBOX_ prefix): how webhooks are retried and how fast things happen."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SandboxSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DASI_SANDBOX_", env_file=None, extra="ignore")

    webhook_max_attempts: int = Field(default=8, ge=1, description="Tries per webhook call before giving up")
    webhook_backoff_s: float = Field(default=1.0, ge=0, description="First retry delay; doubled each try")
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    webhook_flush_ms: int = Field(default=20, ge=0, description="Reports are gathered this long per call")
    webhook_batch_max: int = Field(default=1000, ge=1, description="Reports per webhook call at most")
    power_off_redelivery_ms: int = Field(
        default=1000, ge=0, description="power_off_then_delivered: time from the 2003 report to delivery"
    )
    seed: int | None = Field(default=None, description="Seed of the error-rate dice (reproducible runs)")
    # Where every appkey's delivery reports go until PUT /sandbox/{appkey}/webhooks/... says otherwise:
    # `{base}/nhn-kakao`, `{base}/nhn-sms`, `{base}/email`. `dasi up` points it at the local dispatcher.
    webhook_base_url: str | None = Field(default=None, description="e.g. http://127.0.0.1:8004/v1/webhooks")
    webhook_secret: str = Field(
        default="dasi-local-webhook-secret",  # the dispatcher's dev default (provider_settings.py)
        description="Signing key of the default webhooks",
    )
