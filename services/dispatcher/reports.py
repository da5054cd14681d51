"""Delivery-report webhooks: verify the signature (the provider adapter's `parse_webhook`), keep the
reports and apply them (pipeline.Dispatcher.receive_reports: idempotent, any order, kept until their
submission is recorded), and put opt-outs (080 UNSUBSCRIBE, email unsubscribe) on the suppression list
at once (DOMAIN C7)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.models import SenderProfile
from services.dispatcher.pipeline import Dispatcher
from services.dispatcher.providers.common import OptOut, WebhookBatch, WebhookSignatureError
from services.dispatcher.suppressions import NewSuppression, add_suppressions, normalize_phone

ParseWebhook = Callable[[Mapping[str, str], bytes, str], WebhookBatch]


class UnknownProvider(Exception):
    pass


class WebhookRejected(Exception):
    def __init__(self, detail: str, *, signature: bool) -> None:
        super().__init__(detail)
        self.signature = signature


@dataclass(frozen=True)
class WebhookResult:
    received: int
    applied: int
    run_now: list[uuid.UUID] = field(default_factory=list)


@dataclass
class ReportReceiver:
    dispatcher: Dispatcher
    parsers: Mapping[str, tuple[ParseWebhook, str]]  # provider name -> (parse_webhook, secret)

    async def receive(
        self, session: AsyncSession, provider: str, headers: Mapping[str, str], raw: bytes, now: datetime
    ) -> WebhookResult:
        entry = self.parsers.get(provider)
        if entry is None:
            raise UnknownProvider(
                f"no provider named {provider!r} (known: {', '.join(sorted(self.parsers))})"
            )
        parse, secret = entry
        try:
            batch = parse(headers, raw, secret)
        except WebhookSignatureError as exc:
            raise WebhookRejected(str(exc), signature=True) from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookRejected(f"not a {provider} webhook body: {exc}", signature=False) from exc
        run_now: list[uuid.UUID] = []
        if batch.reports:
            run_now = await self.dispatcher.receive_reports(session, provider, batch.reports)
        if batch.opt_outs:
            await suppress_opt_outs(session, batch.opt_outs, now)
        applied = await _applied_count(session, provider, [r.provider_ref for r in batch.reports])
        return WebhookResult(
            received=len(batch.reports) + len(batch.opt_outs), applied=applied, run_now=run_now
        )


async def _applied_count(session: AsyncSession, provider: str, refs: list[str]) -> int:
    if not refs:
        return 0
    row = await session.execute(
        text(
            "SELECT count(*) FROM dispatcher.delivery_reports"
            " WHERE provider = :p AND provider_ref = ANY(:refs) AND applied_at IS NOT NULL"
        ),
        {"p": provider, "refs": refs},
    )
    return int(row.scalar_one())


async def suppress_opt_outs(session: AsyncSession, opt_outs: list[OptOut], now: datetime) -> None:
    """An opt-out names an address, not a workspace: a 080 opt-out belongs to the workspaces whose
    sender profile has that 080 number; an email opt-out to those that emailed the address."""
    for o in opt_outs:
        kind, _, detail = o.via.partition(":")
        if kind == "080":
            number = normalize_phone(detail)
            rows = await session.execute(
                select(SenderProfile.workspace_id).where(SenderProfile.opt_out_number == number).distinct()
            )
            workspaces = list(rows.scalars())
            entry = NewSuppression("sms", o.recipient, "080", reason=f"080 수신거부 {detail}")
        else:
            rows = await session.execute(
                text(
                    "SELECT DISTINCT workspace_id FROM dispatcher.delivery_attempts"
                    " WHERE channel = 'email' AND lower(payload ->> 'to') = lower(:to)"
                ),
                {"to": o.recipient},
            )
            workspaces = list(rows.scalars())
            # the ESP's unsubscribe / spam report: an opt-out from advertising, like the one-click link
            entry = NewSuppression("email", o.recipient, "email_one_click", reason=o.via)
        for workspace_id in workspaces:
            await add_suppressions(session, workspace_id, [entry], now)
