"""Putting the send pipeline together for a process: settings, the provider adapters (one shared
httpx client), the composer, breakers and rate limits, and the webhook receiver."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.dispatcher.composer import TemplateComposer
from services.dispatcher.pipeline import Dispatcher
from services.dispatcher.provider_settings import ProviderSettings
from services.dispatcher.providers import email, nhn_kakao, nhn_sms
from services.dispatcher.providers.base import Channel, ProviderAdapter
from services.dispatcher.providers.factory import build_http_client, build_providers
from services.dispatcher.reports import ParseWebhook, ReportReceiver
from services.dispatcher.resilience import ProviderGuards
from shared.clock import Clock
from shared.settings import Settings

Close = Callable[[], Awaitable[None]]


class DispatchSettings(BaseSettings):
    """How the pipeline treats providers (DASI_DISPATCH_ prefix)."""

    model_config = SettingsConfigDict(env_prefix="DASI_DISPATCH_", env_file=None, extra="ignore")

    provider_fallback: bool = Field(
        default=True, description="Let the Kakao provider send the fallback SMS itself (NHN resendParameter)"
    )
    breaker_threshold: int = Field(default=5, ge=1, description="Failed calls in a row that open a breaker")
    breaker_cooldown_s: float = Field(default=30.0, gt=0, description="Open this long, then one probe")
    # messages per second per provider name ("nhn-kakao", "nhn-sms", "fcm", "email"); none: unlimited
    rate_limits: dict[str, float] = Field(default_factory=dict)
    lease_s: float = Field(default=60.0, gt=0, description="After this, a `submitting` attempt was abandoned")
    poll_after_s: float = Field(
        default=600.0, gt=0, description="Ask the provider after this without a report"
    )
    coalesce_messages: int = Field(
        default=1000, ge=1, description="A worker runs the jobs in flight together up to this many messages"
    )
    coalesce_wait_ms: float = Field(
        default=5.0, ge=0, description="How long a batch waits for others to join its run"
    )
    coalesce_runs: int = Field(default=3, ge=1, description="Runs at once; batches gather meanwhile")
    public_url: str = Field(
        default="http://127.0.0.1:8004", description="Where this service is reached (unsubscribe links)"
    )


def build_adapters(
    provider_settings: ProviderSettings,
) -> tuple[Mapping[Channel, ProviderAdapter], Close]:
    """Every channel's adapter, on one shared httpx client (aiohttp transport); `close` closes it."""
    client = build_http_client(provider_settings)
    providers = build_providers(provider_settings, client)
    by_channel = {channel: providers.for_channel(channel) for channel in Channel}
    return by_channel, client.aclose


def build_dispatcher(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: Clock,
    provider_settings: ProviderSettings,
    config: DispatchSettings,
    *,
    with_adapters: bool = True,
) -> tuple[Dispatcher, Close]:
    async def nothing() -> None:
        return None

    adapters: Mapping[Channel, ProviderAdapter] = {}
    close: Close = nothing
    if with_adapters:
        adapters, close = build_adapters(provider_settings)
    guards = ProviderGuards(
        clock,
        threshold=config.breaker_threshold,
        cooldown=timedelta(seconds=config.breaker_cooldown_s),
        rates=dict(config.rate_limits),
    )
    dispatcher = Dispatcher(
        sessionmaker=sessionmaker,
        adapters=adapters,
        composer=TemplateComposer(settings.secret_key, config.public_url),
        clock=clock,
        guards=guards,
        provider_fallback=config.provider_fallback,
        lease=timedelta(seconds=config.lease_s),
    )
    return dispatcher, close


def webhook_parsers(provider_settings: ProviderSettings) -> dict[str, tuple[ParseWebhook, str]]:
    """Provider name (as in /v1/webhooks/{provider}) -> its adapter's webhook parser and secret."""
    return {
        "nhn-kakao": (nhn_kakao.parse_events, provider_settings.nhn_kakao_webhook_secret),
        "nhn-sms": (nhn_sms.parse_events, provider_settings.nhn_sms_webhook_secret),
        "email": (email.parse_events, provider_settings.email_webhook_secret),
    }


def report_receiver(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: Clock,
    provider_settings: ProviderSettings | None = None,
    config: DispatchSettings | None = None,
) -> ReportReceiver:
    """The webhook side needs no adapters: reports are applied, and fallbacks go to the worker."""
    provider_settings = provider_settings or ProviderSettings()
    dispatcher, _ = build_dispatcher(
        settings, sessionmaker, clock, provider_settings, config or DispatchSettings(), with_adapters=False
    )
    return ReportReceiver(dispatcher, webhook_parsers(provider_settings))
