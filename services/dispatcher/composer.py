"""The `Composer` of the send pipeline, built from the message rules: recipients (recipients.py),
templates (models.Template, rendering.py), sender profiles (senders.py), the ad form and sizing
(adform.py) and the policy (policy.py). Per batch: one query for recipients, one for templates,
one for the default sender profile; templates are compiled once per process and version.

Test sends to a direct address (a marketer's own phone, token or email) pass the suppression check
and the sender rules like any message, but not consent or the night window: the person asked for it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher import policy
from services.dispatcher.adform import Sender, final_content, kakao_fallback_text
from services.dispatcher.compose import ComposeItem, Prepared
from services.dispatcher.models import SenderProfile, Template
from services.dispatcher.policy import ConsentFact, Recipient, Rules, channel_family
from services.dispatcher.providers.base import Channel, Outgoing, ProviderFallback
from services.dispatcher.recipients import load_recipients
from services.dispatcher.rendering import CompiledTemplate, compile_template
from services.dispatcher.senders import adform_sender, sender_rules
from services.dispatcher.sizing import ContentError
from services.dispatcher.suppressions import (
    NewSuppression,
    add_suppressions,
    normalize_address,
    normalize_email,
    normalize_phone,
    suppressed_addresses,
)
from shared.workspaces import Workspace

CACHE_TTL_S = 5.0  # workspace, sender profile and templates are re-read this often per process
TEXT = frozenset({Channel.sms, Channel.lms, Channel.mms})
KAKAO = frozenset({Channel.alimtalk, Channel.friendtalk, Channel.brand_message})
_ALL_TOPICS = ("sms", "kakao", "push", "email", "night")


def template_fits(template_channel: str, channel: Channel) -> bool:
    return template_channel == channel.value or (template_channel == "sms" and channel in TEXT)


def unsubscribe_token(secret: str, workspace_id: uuid.UUID, address: str) -> str:
    """`<workspace>.<address hex>.<mac>`: names the address without a lookup, cannot be forged."""
    payload = f"{workspace_id.hex}.{address.encode().hex()}"
    mac = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()[:32]
    return f"{payload}.{mac}"


def read_unsubscribe_token(secret: str, token: str) -> tuple[uuid.UUID, str] | None:
    try:
        workspace_hex, address_hex, mac = token.split(".")
        payload = f"{workspace_hex}.{address_hex}"
        expected = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()[:32]
        if not hmac.compare_digest(mac, expected):
            return None
        return uuid.UUID(hex=workspace_hex), bytes.fromhex(address_hex).decode()
    except ValueError:
        return None


@dataclass
class TemplateComposer:
    secret: str  # signs the email unsubscribe links
    public_url: str = "http://127.0.0.1:8004"  # where the one-click unsubscribe endpoint is reached
    _compiled: dict[tuple[str, str], CompiledTemplate] = field(default_factory=dict)
    _workspaces: dict[uuid.UUID, tuple[float, str, SenderProfile | None]] = field(default_factory=dict)
    _template_rows: dict[uuid.UUID, tuple[float, Template]] = field(default_factory=dict)

    def _compile(
        self, key: tuple[str, str], parts: Mapping[str, str | None], defaults: Mapping[str, str]
    ) -> CompiledTemplate:
        found = self._compiled.get(key)
        if found is None:
            if len(self._compiled) > 2000:
                self._compiled.clear()
            found = self._compiled[key] = compile_template(parts, defaults)
        return found

    def _template_parts(self, t: Template) -> CompiledTemplate:
        key = (str(t.id), t.updated_at.isoformat())
        found = self._compiled.get(key)
        if found is not None:
            return found
        parts: dict[str, str | None] = {
            "body": t.body,
            "subject": t.subject,
            "fallback_body": t.fallback_body,
        }
        for i, button in enumerate(t.buttons or []):
            for k, v in button.items():
                if isinstance(v, str) and k != "type":
                    parts[f"buttons.{i}.{k}"] = v
        return self._compile(key, parts, t.variables or {})

    def _inline(self, content: Mapping[str, Any]) -> CompiledTemplate:
        digest = hashlib.sha256(repr(sorted(content.items())).encode()).hexdigest()
        return self._compile(
            ("inline", digest), {"body": content.get("body"), "subject": content.get("subject")}, {}
        )

    async def _workspace(
        self, session: AsyncSession, workspace_id: uuid.UUID
    ) -> tuple[str, SenderProfile | None]:
        """The workspace's timezone and default sender profile, remembered for CACHE_TTL_S."""
        hit = self._workspaces.get(workspace_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1], hit[2]
        workspace = await session.get(Workspace, workspace_id)
        tz = workspace.timezone if workspace else "Asia/Seoul"
        sender_row = (
            await session.execute(
                select(SenderProfile)
                .where(SenderProfile.workspace_id == workspace_id)
                .order_by(SenderProfile.is_default.desc(), SenderProfile.created_at)
                .limit(1)
            )
        ).scalar_one_or_none()
        self._workspaces[workspace_id] = (time.monotonic() + CACHE_TTL_S, tz, sender_row)
        return tz, sender_row

    async def _templates(
        self, session: AsyncSession, workspace_id: uuid.UUID, ids: set[uuid.UUID]
    ) -> dict[uuid.UUID, Template]:
        """Templates by id, remembered for CACHE_TTL_S (an approval withdrawn takes that long)."""
        now = time.monotonic()
        fresh = {i: self._template_rows[i] for i in ids if i in self._template_rows}
        found = {
            i: t for i, (expires, t) in fresh.items() if expires > now and t.workspace_id == workspace_id
        }
        missing = ids - set(found)
        if missing:
            rows = await session.execute(
                select(Template).where(Template.workspace_id == workspace_id, Template.id.in_(missing))
            )
            for t in rows.scalars():
                found[t.id] = t
                self._template_rows[t.id] = (now + CACHE_TTL_S, t)
            if len(self._template_rows) > 5000:
                self._template_rows.clear()
        return found

    async def compose(
        self, session: AsyncSession, workspace_id: uuid.UUID, items: Sequence[ComposeItem], now: datetime
    ) -> list[Prepared]:
        tz, sender_row = await self._workspace(session, workspace_id)
        if sender_row is None:
            return [Prepared("skip", reason="no_sender_profile") for _ in items]
        recipients = await load_recipients(
            session, workspace_id, [i.profile_id for i in items if i.profile_id is not None]
        )
        template_ids = {i.template_id for i in items if i.template_id}
        template_ids.update(i.fallback_template_id for i in items if i.fallback_template_id)
        templates = await self._templates(session, workspace_id, template_ids)
        direct = await self._direct_suppressions(session, workspace_id, items)
        rules = sender_rules(sender_row)
        numbers = sorted(rules.registered_numbers)
        shared = _Batch(
            tz, now, sender_row, adform_sender(sender_row), rules, numbers[0] if numbers else None
        )
        out: list[Prepared] = []
        for item in items:
            recipient = (
                recipients.get(item.profile_id)
                if item.profile_id is not None
                else _direct_recipient(item, item.channel, now, direct)
            )
            if recipient is None:
                out.append(Prepared("skip", reason="unknown_profile"))
                continue
            template = templates.get(item.template_id) if item.template_id else None
            if item.template_id is not None and template is None:
                out.append(Prepared("skip", reason="unknown_template"))
                continue
            try:
                out.append(self._one(item, recipient, template, templates, direct, shared))
            except ContentError as exc:
                out.append(Prepared("skip", reason=f"content:{exc.code}"))
        return out

    def _verdict(
        self,
        item: ComposeItem,
        recipient: Recipient,
        channel: Channel,
        is_ad: bool,
        template: Template | None,
        b: _Batch,
    ) -> policy.Decision:
        rules = b.rules_by_policy.get(item.night_policy)
        if rules is None:
            rules = b.rules_by_policy[item.night_policy] = Rules(
                timezone=b.tz, night_policy=policy.NightPolicy(item.night_policy)
            )
        message = policy.Message(
            channel=channel,
            is_ad=is_ad,
            template_review_state=template.review_state if template else None,
            sender_number=b.sender_number if channel in TEXT else None,
        )
        return policy.decide(recipient, message, b.now, sender=b.rules, rules=rules)

    def _compiled_for(self, template: Template | None, item: ComposeItem, b: _Batch) -> CompiledTemplate:
        if template is None:
            return self._inline(item.content or {})
        found = b.compiled.get(template.id)
        if found is None:  # per batch: the process-wide cache key is not free
            found = b.compiled[template.id] = self._template_parts(template)
        return found

    def _one(
        self,
        item: ComposeItem,
        recipient: Recipient,
        template: Template | None,
        templates: Mapping[uuid.UUID, Template],
        direct: set[tuple[str, str]],
        b: _Batch,
    ) -> Prepared:
        channel = item.channel
        is_ad = item.is_ad or bool(template and template.is_ad)
        if template is not None and not template_fits(template.channel, channel):
            return Prepared("skip", reason="template_channel_mismatch")
        verdict = self._verdict(item, recipient, channel, is_ad, template, b)
        if verdict.action is policy.Action.skip:
            return Prepared("skip", reason=verdict.reason.value if verdict.reason else "policy")
        if verdict.action is policy.Action.defer:
            return Prepared(
                "defer", reason=verdict.reason.value if verdict.reason else None, not_before=verdict.until
            )
        address = recipient.address(channel) or ""
        sender_row = b.sender_row
        values: dict[str, Any] = {
            "profile": {"name": recipient.name} if recipient.name else {},
            "store": {"name": sender_row.store_name},
            **dict(item.variables),
        }
        rendered = self._compiled_for(template, item, b).render(values, timezone=b.tz)
        unsubscribe_url = None
        if channel is Channel.email:
            token = unsubscribe_token(self.secret, sender_row.workspace_id, address)
            unsubscribe_url = f"{self.public_url}/v1/unsubscribe/{token}"
        image = template.image_url if template is not None else None
        final = final_content(
            channel, rendered.content(image), is_ad=is_ad, sender=b.sender, unsubscribe_url=unsubscribe_url
        )
        if channel in TEXT:
            from_ = b.sender_number or ""
        elif channel in KAKAO:
            from_ = sender_row.kakao_sender_key or ""
        elif channel is Channel.email:
            from_ = sender_row.email_from or ""
        else:
            from_ = sender_row.store_name
        return Prepared(
            "send",
            Outgoing(
                message_id=item.message_id,
                idempotency_key=item.idempotency_key,
                channel=final.channel,
                to=address,
                sender=from_,
                body=final.body,
                is_ad=is_ad,
                subject=final.subject,
                template_code=template.alimtalk_template_code if template is not None else None,
                template_parameters=dict(rendered.parameters) if channel is Channel.alimtalk else {},
                image_url=final.image_url,
                buttons=tuple(rendered.buttons(template.buttons or [])) if template is not None else (),
                unsubscribe_url=final.unsubscribe_url,
                provider_fallback=self._fallback(item, recipient, templates, direct, values, b),
            ),
        )

    def _fallback(
        self,
        item: ComposeItem,
        recipient: Recipient,
        templates: Mapping[uuid.UUID, Template],
        direct: set[tuple[str, str]],
        values: Mapping[str, Any],
        b: _Batch,
    ) -> ProviderFallback | None:
        """The SMS/LMS the Kakao provider is to send itself if the message cannot be delivered; None
        when that fallback would not be sent (policy, its template, its text), so the pipeline's own
        fallback to the next channel decides it later."""
        channel = item.fallback
        if channel is None:
            return None
        template = templates.get(item.fallback_template_id) if item.fallback_template_id else None
        if item.fallback_template_id is not None and template is None:
            return None
        if item.profile_id is None:  # a test send: the address as an SMS recipient (its suppressions)
            recipient = _direct_recipient(item, channel, now=b.now, suppressed=direct)
        is_ad = item.is_ad or bool(template and template.is_ad)
        if self._verdict(item, recipient, channel, is_ad, template, b).action is not policy.Action.send:
            return None
        try:
            rendered = self._compiled_for(template, item, b).render(values, timezone=b.tz)
            body = (
                rendered.fallback_body
                if template is not None and template.channel != "sms"
                else rendered.body
            )
            sized = kakao_fallback_text(body, is_ad=is_ad, sender=b.sender, subject=rendered.subject)
        except ContentError:
            return None
        return ProviderFallback(
            content=sized.body,
            sender_no=b.sender_number or "",
            title=sized.subject,
            unsubscribe_no=b.sender.opt_out_number if is_ad else None,
        )

    async def _direct_suppressions(
        self, session: AsyncSession, workspace_id: uuid.UUID, items: Sequence[ComposeItem]
    ) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        by_family: dict[str, list[str]] = {}
        for i in items:
            if i.address:
                for channel in (i.channel, i.fallback) if i.fallback else (i.channel,):
                    family = channel_family(channel)
                    by_family.setdefault(family, []).append(normalize_address(family, i.address))
        for family, addresses in by_family.items():
            for address in await suppressed_addresses(session, workspace_id, family, addresses):
                found.add((family, address))
        return found

    async def suppress(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        channel: Channel,
        address: str,
        reason: str,
        now: datetime,
    ) -> None:
        if not address:
            return
        family = channel_family(channel)
        # an opted-out outcome is an opt-out from advertising: by 080 for texts, unsubscribe for email
        source = {"sms": "080", "email": "email_one_click"}.get(family, "provider")
        await add_suppressions(
            session, workspace_id, [NewSuppression(family, address, source, reason=reason)], now
        )


@dataclass
class _Batch:
    """What every message of one compose call shares."""

    tz: str
    now: datetime
    sender_row: SenderProfile
    sender: Sender
    rules: policy.SenderRules
    sender_number: str | None
    compiled: dict[uuid.UUID, CompiledTemplate] = field(default_factory=dict)
    rules_by_policy: dict[str, Rules] = field(default_factory=dict)


def _direct_recipient(
    item: ComposeItem, channel: Channel, now: datetime, suppressed: set[tuple[str, str]]
) -> Recipient:
    """A test send's recipient on `channel`: the address as given, consent taken as given."""
    raw = item.address or ""
    family = channel_family(channel)
    address = normalize_address(family, raw)
    granted = {topic: ConsentFact(True, now) for topic in _ALL_TOPICS}
    phone = normalize_phone(raw) if family in ("sms", "kakao") else None
    email = normalize_email(raw) if family == "email" else None
    tokens = (raw,) if family == "push" else ()
    return Recipient(
        profile_id=f"direct:{address}",
        phone=phone,
        email=email,
        push_tokens=tokens,
        kakao_channel_friend=True,
        consents=granted,
        suppressed=frozenset(s for s in suppressed if s[1] == address),
    )
