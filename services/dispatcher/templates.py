"""Message templates: checked when saved, the alimtalk review state, preview, and what the send
pipeline asks of a template (`prepare`).

Alimtalk review (검수) transitions. In production Kakao decides, through the provider (NHN's template
API / its webhook): submitting a template sends it to review there, and the approve / reject
transitions are recorded when the provider reports the result. The review endpoint lets an operator
(or the provider sync, or a test) record them:

    registered --submit--> under_review --approve--> approved
                                        --reject---> rejected --submit--> under_review

Editing the content (body, subject, buttons, variables, code) of an alimtalk template sends it back
to registered: Kakao approved the old text, not the new one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher import senders
from services.dispatcher.adform import Content, FinalContent, Sender, final_content, kakao_fallback_text
from services.dispatcher.models import Template
from services.dispatcher.providers.base import Channel
from services.dispatcher.rendering import (
    CompiledTemplate,
    RenderedTemplate,
    TemplateInvalid,
    TemplateProblem,
    compile_template,
    sample_values,
)
from services.dispatcher.sizing import (
    LMS_MAX_BYTES,
    SUBJECT_MAX_BYTES,
    ContentError,
    SizedText,
    euc_kr_bytes,
)
from shared.errors import Conflict, FieldError, NotFound, ValidationFailed

CONTENT_FIELDS = (
    "body",
    "subject",
    "fallback_body",
    "image_url",
    "buttons",
    "variables",
    "alimtalk_template_code",
)
FIELDS = ("name", "channel", "is_ad", *CONTENT_FIELDS)
BUTTON_TEXT_KEYS = ("name", "linkMo", "linkPc", "schemeAndroid", "schemeIos")

TRANSITIONS = {
    "submit": ({"registered", "rejected"}, "under_review"),
    "approve": ({"under_review"}, "approved"),
    "reject": ({"under_review"}, "rejected"),
}
PREVIEW_SENDER = Sender("스토어 이름", "0800000000")  # when the workspace has no sender profile yet


def template_parts(
    body: str, subject: str | None, fallback_body: str | None, buttons: Sequence[Mapping[str, Any]]
) -> dict[str, str | None]:
    parts: dict[str, str | None] = {"body": body, "subject": subject, "fallback_body": fallback_body}
    for i, button in enumerate(buttons):
        for key in BUTTON_TEXT_KEYS:
            value = button.get(key)
            if isinstance(value, str):
                parts[f"buttons.{i}.{key}"] = value
    return parts


def compile_row(template: Template) -> CompiledTemplate:
    """The compiled form of a saved template (saved ones were checked, so this does not fail)."""
    parts = template_parts(template.body, template.subject, template.fallback_body, template.buttons)
    return compile_template(parts, template.variables)


def _channel_problems(values: Mapping[str, Any]) -> list[TemplateProblem]:
    channel, is_ad = values["channel"], values["is_ad"]
    problems = []
    if channel == "alimtalk":
        if is_ad:
            problems.append(
                TemplateProblem(
                    "is_ad", "alimtalk is informational only; advertise by friendtalk (C9)", "alimtalk_ad"
                )
            )
        if not values.get("alimtalk_template_code"):
            problems.append(
                TemplateProblem(
                    "alimtalk_template_code", "an alimtalk template needs Kakao's template code", "missing"
                )
            )
    if channel == "email" and not values.get("subject"):
        problems.append(TemplateProblem("subject", "an email template needs a subject", "missing"))
    if channel == "sms" and is_ad and values.get("image_url") and not (values.get("body") or "").strip():
        problems.append(
            TemplateProblem("body", "an ad MMS needs text, not only an image (C13)", "image_only_ad")
        )
    return problems


def _text_problems(values: Mapping[str, Any], rendered: RenderedTemplate) -> list[TemplateProblem]:
    """Text that will travel as SMS/LMS (an SMS template, or a Kakao template's fallback) must be
    EUC-KR and fit an LMS; checked on the sample rendering, so the template's own text is to blame."""
    checks: list[tuple[str, str]] = []
    if values["channel"] == "sms":
        checks += [("body", rendered.body), ("subject", rendered.subject or "")]
    elif values["channel"] in ("alimtalk", "friendtalk", "brand_message"):
        checks.append(("fallback_body" if values.get("fallback_body") else "body", rendered.fallback_body))
    problems = []
    for name, text in checks:
        try:
            size = euc_kr_bytes(text, field=name)
        except ContentError as exc:
            problems.append(TemplateProblem(name, exc.message, exc.code))
            continue
        if name == "subject" and size > SUBJECT_MAX_BYTES:
            problems.append(
                TemplateProblem(
                    name,
                    f"{size} bytes in EUC-KR with sample values; at most {SUBJECT_MAX_BYTES}",
                    "too_long",
                )
            )
        if name != "subject" and size > LMS_MAX_BYTES:
            problems.append(
                TemplateProblem(
                    name, f"{size} bytes in EUC-KR with sample values; at most {LMS_MAX_BYTES}", "too_long"
                )
            )
    return problems


def check_template(values: Mapping[str, Any]) -> CompiledTemplate:
    """Everything a template must pass to be saved; ValidationFailed names each wrong field
    (`body.body`, `body.variables.coupon.nmae` ...)."""
    problems = _channel_problems(values)
    compiled: CompiledTemplate | None = None
    try:
        compiled = compile_template(
            template_parts(
                values["body"],
                values.get("subject"),
                values.get("fallback_body"),
                values.get("buttons") or [],
            ),
            values.get("variables") or {},
        )
    except TemplateInvalid as exc:
        problems += exc.problems
    if compiled is not None:
        try:
            rendered = compiled.render(sample_values())
        except ContentError as exc:
            problems.append(TemplateProblem(exc.field, exc.message, exc.code))
        else:
            problems += _text_problems(values, rendered)
    if problems or compiled is None:
        errors = [FieldError(field=f"body.{p.field}", message=p.message, type=p.type) for p in problems]
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
        raise ValidationFailed(detail, errors=errors)
    return compiled


def _history(template: Template, state: str, at: datetime, reason: str | None = None) -> None:
    entry: dict[str, Any] = {"state": state, "at": at.isoformat()}
    if reason:
        entry["reason"] = reason
    template.review_history = [*template.review_history, entry]


async def _flush_unique(session: AsyncSession, name: str) -> None:
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a template named {name!r} already exists in this workspace") from exc


async def create_template(
    session: AsyncSession, workspace_id: uuid.UUID, now: datetime, fields: Mapping[str, Any]
) -> Template:
    values = {k: fields.get(k) for k in FIELDS}
    values["buttons"] = values["buttons"] or []
    values["variables"] = values["variables"] or {}
    values["is_ad"] = bool(values["is_ad"])
    check_template(values)
    template = Template(id=uuid.uuid4(), workspace_id=workspace_id, created_at=now, updated_at=now, **values)
    template.review_history = []
    if template.channel == "alimtalk":
        template.review_state = "registered"
        _history(template, "registered", now)
    session.add(template)
    await _flush_unique(session, template.name)
    return template


async def list_templates(
    session: AsyncSession, workspace_id: uuid.UUID, channel: str | None = None
) -> list[Template]:
    stmt = select(Template).where(Template.workspace_id == workspace_id)
    if channel:
        stmt = stmt.where(Template.channel == channel)
    return list((await session.execute(stmt.order_by(Template.created_at, Template.id))).scalars())


async def get_template(session: AsyncSession, workspace_id: uuid.UUID, template_id: uuid.UUID) -> Template:
    template = await session.get(Template, template_id)
    if template is None or template.workspace_id != workspace_id:
        raise NotFound("no such template")
    return template


async def load_templates(
    session: AsyncSession, workspace_id: uuid.UUID, template_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Template]:
    """The workspace's templates among `template_ids`, in one query."""
    if not template_ids:
        return {}
    stmt = select(Template).where(Template.workspace_id == workspace_id, Template.id.in_(set(template_ids)))
    return {t.id: t for t in (await session.execute(stmt)).scalars()}


async def update_template(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    template_id: uuid.UUID,
    now: datetime,
    changes: Mapping[str, Any],
) -> Template:
    template = await get_template(session, workspace_id, template_id)
    if "channel" in changes and changes["channel"] != template.channel:
        raise ValidationFailed(
            "a template's channel cannot change; create a new template",
            errors=[FieldError(field="body.channel", message="cannot change", type="immutable")],
        )
    values = {k: getattr(template, k) for k in FIELDS}
    values.update({k: v for k, v in changes.items() if k in FIELDS})
    values["buttons"] = values["buttons"] or []
    values["variables"] = values["variables"] or {}
    values["is_ad"] = bool(values["is_ad"])
    check_template(values)
    content_changed = any(values[k] != getattr(template, k) for k in (*CONTENT_FIELDS, "is_ad"))
    for key in FIELDS:
        setattr(template, key, values[key])
    template.updated_at = now
    if template.channel == "alimtalk" and content_changed and template.review_state != "registered":
        template.review_state = "registered"
        template.review_reason = None
        template.reviewed_at = None
        _history(template, "registered", now, "content changed")
    await _flush_unique(session, template.name)
    return template


async def delete_template(session: AsyncSession, workspace_id: uuid.UUID, template_id: uuid.UUID) -> None:
    template = await get_template(session, workspace_id, template_id)
    await session.delete(template)
    await session.flush()


async def review_template(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    template_id: uuid.UUID,
    now: datetime,
    action: str,
    reason: str | None = None,
) -> Template:
    """Record a step of Kakao's review: submit, approve, or reject (with Kakao's reason)."""
    template = await get_template(session, workspace_id, template_id)
    if template.channel != "alimtalk":
        raise Conflict("only alimtalk templates are reviewed by Kakao")
    allowed, target = TRANSITIONS[action]
    if template.review_state not in allowed:
        raise Conflict(f"cannot {action} a template that is {template.review_state}")
    if action == "reject" and not reason:
        raise ValidationFailed(
            "a rejection needs Kakao's reason",
            errors=[FieldError(field="body.reason", message="required when rejecting", type="missing")],
        )
    template.review_state = target
    template.review_reason = reason if action == "reject" else None
    if action in ("approve", "reject"):
        template.reviewed_at = now
    _history(template, target, now, reason)
    template.updated_at = now
    await session.flush()
    return template


@dataclass(frozen=True)
class Prepared:
    """One recipient's message from a template, in its final form on the template's channel."""

    content: FinalContent
    rendered: RenderedTemplate
    fallback: SizedText | None  # the SMS/LMS for a Kakao message (ad form when it is an ad)


def prepare(
    template: Template,
    compiled: CompiledTemplate,
    values: Mapping[str, Any],
    *,
    sender: Sender,
    timezone: str,
    unsubscribe_url: str | None = None,
    with_fallback: bool = True,
) -> Prepared:
    """Render, put in ad form and size one message (raises ContentError with a stable `code`).
    `store.name` is filled from the sender when the values lack it."""
    if not _has(values, "store.name"):
        values = {**values, "store.name": sender.store_name}
    rendered = compiled.render(values, timezone=timezone)
    channel = Channel(template.channel)
    content = final_content(
        channel,
        Content(rendered.body, rendered.subject, template.image_url),
        is_ad=template.is_ad,
        sender=sender,
        unsubscribe_url=unsubscribe_url,
    )
    fallback = None
    if with_fallback and channel in (Channel.alimtalk, Channel.friendtalk, Channel.brand_message):
        fallback = kakao_fallback_text(rendered.fallback_body, is_ad=template.is_ad, sender=sender)
    return Prepared(content, rendered, fallback)


def _has(values: Mapping[str, Any], path: str) -> bool:
    if values.get(path):
        return True
    node: Any = values
    for part in path.split("."):
        if not isinstance(node, Mapping) or not node.get(part):
            return False
        node = node[part]
    return True


@dataclass(frozen=True)
class Preview:
    prepared: Prepared
    warnings: list[str]


async def preview_template(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    template_id: uuid.UUID,
    *,
    timezone: str,
    values: Mapping[str, Any] | None = None,
    sender_profile_id: uuid.UUID | None = None,
) -> Preview:
    """Render a saved template as it would go out: with the given values (missing ones take their
    defaults) or, when none are given, with a sample for every variable."""
    template = await get_template(session, workspace_id, template_id)
    warnings: list[str] = []
    try:
        profile = await senders.get_sender_profile(session, workspace_id, sender_profile_id)
        sender = senders.adform_sender(profile)
        if template.is_ad and not sender.opt_out_number:
            warnings.append("the sender profile has no verified 080 opt-out number: ads cannot be sent")
    except NotFound:
        if sender_profile_id is not None:
            raise
        sender = PREVIEW_SENDER
        warnings.append(
            "this workspace has no sender profile: a placeholder store name and 080 number are shown"
        )
    if template.channel == "alimtalk" and template.review_state != "approved":
        warnings.append(
            f"the alimtalk template is {template.review_state}: it is sent only once Kakao approves it"
        )
    unsubscribe_url = "https://go.dasi.shop/u/preview" if template.channel == "email" else None
    prepared = prepare(
        template,
        compile_row(template),
        sample_values() if values is None else values,
        sender=sender,
        timezone=timezone,
        unsubscribe_url=unsubscribe_url,
    )
    return Preview(prepared, warnings)
