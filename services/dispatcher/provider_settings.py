"""Where the channel providers are and how to authenticate (DASI_ prefix).

The defaults point every provider at the provider sandbox of the local stack (port 8010), so
`dasi up` sends nothing real. For production set the real base URLs and keys, e.g.

    DASI_NHN_KAKAO_BASE_URL=https://api-alimtalk.cloud.toast.com
    DASI_NHN_SMS_BASE_URL=https://api-sms.cloud.toast.com
    DASI_FCM_BASE_URL=https://fcm.googleapis.com      DASI_FCM_LOOKUP=false
    DASI_EMAIL_BASE_URL=https://api.sendgrid.com

With DASI_ENV=production the dev defaults (sandbox URLs, keys and webhook secrets) are refused.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SANDBOX_URL = "http://127.0.0.1:8010"
DEV_KEY = "dasi-local"
DEV_WEBHOOK_SECRET = "dasi-local-webhook-secret"  # noqa: S105 - refused outside dev, see below


class ProviderSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DASI_", env_file=None, extra="ignore")

    env: Literal["dev", "test", "production"] = "dev"

    nhn_kakao_base_url: str = SANDBOX_URL
    nhn_kakao_appkey: str = DEV_KEY
    nhn_kakao_secret_key: str = DEV_KEY
    nhn_kakao_webhook_secret: str = DEV_WEBHOOK_SECRET
    # brand message targeting: I = channel friends only, M / N = also non-friends with marketing consent
    nhn_kakao_brand_targeting: Literal["I", "M", "N"] = "M"

    nhn_sms_base_url: str = SANDBOX_URL
    nhn_sms_appkey: str = DEV_KEY
    nhn_sms_secret_key: str = DEV_KEY
    nhn_sms_webhook_secret: str = DEV_WEBHOOK_SECRET

    fcm_base_url: str = SANDBOX_URL
    fcm_project_id: str = DEV_KEY
    # an OAuth2 access token for the FCM scope; minting it from a service account is not done here
    fcm_access_token: str = DEV_KEY
    # FCM itself cannot find a sent message; the sandbox can (GET /v1/projects/{p}/messages?idempotencyKey=)
    fcm_lookup: bool = True

    email_base_url: str = SANDBOX_URL
    email_api_key: str = DEV_KEY  # the sandbox takes it as the partition (appkey)
    email_webhook_secret: str = DEV_WEBHOOK_SECRET

    timeout_s: float = Field(default=10.0, gt=0)
    max_connections: int = Field(default=100, ge=1)
    nhn_batch_size: int = Field(default=1000, ge=1, le=1000, description="Recipients per NHN call")
    single_send_concurrency: int = Field(default=64, ge=1, description="FCM / email calls in flight")

    @model_validator(mode="after")
    def _refuse_dev_defaults_in_production(self) -> ProviderSettings:
        if self.env != "production":
            return self
        dev = [
            name
            for name, value in self.model_dump().items()
            if value in (SANDBOX_URL, DEV_KEY, DEV_WEBHOOK_SECRET)
        ]
        if dev:
            raise ValueError(f"provider settings left at their dev defaults in production: {', '.join(dev)}")
        return self
