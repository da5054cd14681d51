"""Build the provider adapters from settings, all sharing one httpx.AsyncClient on the aiohttp
transport (httpx-aiohttp): httpx's own transport manages ~650 requests/s at 32 in flight where
aiohttp manages ~14,000 (see infra/bench/providers.py for this machine's figures).

Make the client in the worker's on_startup / the app's lifespan and close it on shutdown:

    client = build_http_client(settings)
    providers = build_providers(settings, client)
    adapter = providers.for_channel(Channel.friendtalk)
    ...
    await client.aclose()
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from httpx_aiohttp import AiohttpTransport

from services.dispatcher.provider_settings import ProviderSettings
from services.dispatcher.providers import email, nhn_kakao, nhn_sms
from services.dispatcher.providers.base import Channel, DeliveryReport, ProviderAdapter
from services.dispatcher.providers.common import WebhookBatch
from services.dispatcher.providers.email import EmailAdapter
from services.dispatcher.providers.fcm import FcmAdapter
from services.dispatcher.providers.nhn_kakao import NhnKakaoAdapter
from services.dispatcher.providers.nhn_sms import NhnSmsAdapter


def build_http_client(settings: ProviderSettings) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=settings.max_connections, max_keepalive_connections=settings.max_connections
    )
    return httpx.AsyncClient(
        transport=AiohttpTransport(limits=limits), timeout=settings.timeout_s, follow_redirects=False
    )


@dataclass(frozen=True)
class Providers:
    kakao: NhnKakaoAdapter
    sms: NhnSmsAdapter
    push: FcmAdapter
    email: EmailAdapter
    settings: ProviderSettings

    @property
    def all(self) -> tuple[ProviderAdapter, ...]:
        return (self.kakao, self.sms, self.push, self.email)

    def for_channel(self, channel: Channel) -> ProviderAdapter:
        for adapter in self.all:
            if channel in adapter.channels:
                return adapter
        raise KeyError(f"no provider for channel {channel}")

    def by_name(self) -> Mapping[str, ProviderAdapter]:
        return {adapter.name: adapter for adapter in self.all}

    def parse_webhook(self, provider: str, headers: Mapping[str, str], raw_body: bytes) -> WebhookBatch:
        """Verify and map a webhook for `provider` ("nhn-kakao", "nhn-sms", "email") with its
        configured secret; raises WebhookSignatureError on a bad signature. FCM sends none."""
        if provider == NhnKakaoAdapter.name:
            return nhn_kakao.parse_events(headers, raw_body, self.settings.nhn_kakao_webhook_secret)
        if provider == NhnSmsAdapter.name:
            return nhn_sms.parse_events(headers, raw_body, self.settings.nhn_sms_webhook_secret)
        if provider == EmailAdapter.name:
            return email.parse_events(headers, raw_body, self.settings.email_webhook_secret)
        raise KeyError(f"{provider} sends no webhooks")

    def reports(self, provider: str, headers: Mapping[str, str], raw_body: bytes) -> list[DeliveryReport]:
        return self.parse_webhook(provider, headers, raw_body).reports


def build_providers(settings: ProviderSettings, client: httpx.AsyncClient) -> Providers:
    return Providers(
        kakao=NhnKakaoAdapter(
            client,
            base_url=settings.nhn_kakao_base_url,
            appkey=settings.nhn_kakao_appkey,
            secret_key=settings.nhn_kakao_secret_key,
            webhook_secret=settings.nhn_kakao_webhook_secret,
            brand_targeting=settings.nhn_kakao_brand_targeting,
            batch_size=settings.nhn_batch_size,
        ),
        sms=NhnSmsAdapter(
            client,
            base_url=settings.nhn_sms_base_url,
            appkey=settings.nhn_sms_appkey,
            secret_key=settings.nhn_sms_secret_key,
            webhook_secret=settings.nhn_sms_webhook_secret,
            batch_size=settings.nhn_batch_size,
        ),
        push=FcmAdapter(
            client,
            base_url=settings.fcm_base_url,
            project_id=settings.fcm_project_id,
            access_token=settings.fcm_access_token,
            concurrency=settings.single_send_concurrency,
            lookup_supported=settings.fcm_lookup,
        ),
        email=EmailAdapter(
            client,
            base_url=settings.email_base_url,
            api_key=settings.email_api_key,
            webhook_secret=settings.email_webhook_secret,
            concurrency=settings.single_send_concurrency,
        ),
        settings=settings,
    )
