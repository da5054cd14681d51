"""The send pipeline's tables, in the `dispatcher` schema: messages, delivery attempts and the
delivery-report inbox.

- `messages`: one row per recipient and send request; `(workspace_id, idempotency_key)` is unique, so
  a repeated request is ignored. Its `status` ends in exactly one outcome (invariant 2): sent /
  delivered / delivered_via_fallback, skipped (reason), failed (reason). `chain_pos` is where in the
  channel chain it stands; `not_before` holds it back (night deferral, retry backoff, rate limits).
- `delivery_attempts`: one row per hand-over to a provider, committed as `submitting` *before* the
  provider call with the key the provider is given; a crash leaves it `submitting`, and recovery
  asks the provider (lookup) before it would submit again. `(provider, provider_ref)` is unique.
- `delivery_reports`: every report a webhook or a poll brought, kept so that one arriving before its
  submission was recorded is applied later, and one arriving twice is applied once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import PLATFORM_SCHEMA, Base

SCHEMA = "dispatcher"

MESSAGE_STATUSES = (
    "queued",
    "deferred",
    "sending",
    "sent",
    "delivered",
    "delivered_via_fallback",
    "skipped",
    "failed",
)
FINAL_STATUSES = ("delivered", "delivered_via_fallback", "skipped", "failed")
MESSAGE_KINDS = ("campaign", "trigger", "transactional", "test")
ATTEMPT_STATES = ("submitting", "pending", "done")

_EMPTY_JSON = text("'{}'::jsonb")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Message(Base):
    """One message to one recipient; ends with exactly one recorded outcome."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("workspace_id", "idempotency_key", name="uq_messages_workspace_id_idempotency_key"),
        CheckConstraint(_in("status", MESSAGE_STATUSES), name="status"),
        CheckConstraint(_in("kind", MESSAGE_KINDS), name="kind"),
        CheckConstraint("night_policy IN ('defer', 'skip')", name="night_policy"),
        # the cron's "what is due" scan touches only the few rows waiting
        Index(
            "ix_dispatcher_messages_not_before_waiting",
            "not_before",
            postgresql_where=text("status IN ('queued', 'deferred')"),
        ),
        Index("ix_dispatcher_messages_workspace_id_campaign_id", "workspace_id", "campaign_id"),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{PLATFORM_SCHEMA}.workspaces.id", ondelete="CASCADE")
    )
    idempotency_key: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    profile_id: Mapped[uuid.UUID | None]
    address: Mapped[str | None] = mapped_column(String(320))  # a direct address (test sends)
    campaign_id: Mapped[uuid.UUID | None]
    trigger_id: Mapped[uuid.UUID | None]
    step: Mapped[str | None] = mapped_column(String(64))
    chain: Mapped[list[str]] = mapped_column(ARRAY(String(16)))
    chain_pos: Mapped[int] = mapped_column(server_default="0")
    tries: Mapped[int] = mapped_column(server_default="0")  # transient failures on the current channel
    template_id: Mapped[uuid.UUID | None]
    templates: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_EMPTY_JSON)
    content: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    variables: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=_EMPTY_JSON)
    is_ad: Mapped[bool] = mapped_column(server_default="false")
    night_policy: Mapped[str] = mapped_column(String(8), server_default="defer")
    status: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str | None] = mapped_column(String(255))
    channel: Mapped[str | None] = mapped_column(String(16))  # the channel that delivered (or was accepted)
    cost_krw: Mapped[int] = mapped_column(server_default="0")
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DeliveryAttempt(Base):
    """One hand-over of a message to a provider on one channel."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (
        UniqueConstraint("message_id", "seq", name="uq_delivery_attempts_message_id_seq"),
        UniqueConstraint("provider", "provider_ref", name="uq_delivery_attempts_provider_provider_ref"),
        UniqueConstraint("provider", "provider_key", name="uq_delivery_attempts_provider_provider_key"),
        CheckConstraint(_in("state", ATTEMPT_STATES), name="state"),
        Index(
            "ix_dispatcher_delivery_attempts_open",
            "state",
            "submitted_at",
            postgresql_where=text("state IN ('submitting', 'pending')"),
        ),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    message_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(f"{SCHEMA}.messages.id", ondelete="CASCADE"))
    workspace_id: Mapped[uuid.UUID]
    seq: Mapped[int]
    channel: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str] = mapped_column(String(32))
    provider_key: Mapped[str] = mapped_column(String(64))  # the idempotency key the provider is given
    provider_ref: Mapped[str | None] = mapped_column(String(200))
    provider_fallback: Mapped[bool] = mapped_column(server_default="false")  # the provider's own SMS
    state: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str | None] = mapped_column(String(16))
    code: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    resend_status: Mapped[str | None] = mapped_column(String(8))
    cost_krw: Mapped[int] = mapped_column(server_default="0")
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)  # the rendered Outgoing, for a resubmission
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reported_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DeliveryReport(Base):
    """A provider's delivery report as received (webhook or poll); `applied_at` once it took effect."""

    __tablename__ = "delivery_reports"
    __table_args__ = (
        UniqueConstraint(
            "provider", "provider_ref", "outcome", "code", "resend_status", name="uq_delivery_reports_fact"
        ),
        Index(
            "ix_dispatcher_delivery_reports_unapplied",
            "provider",
            "provider_ref",
            postgresql_where=text("applied_at IS NULL"),
        ),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_ref: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(String(32))
    resend_status: Mapped[str] = mapped_column(String(8), server_default="")
    cost_krw: Mapped[int | None]
    detail: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    applied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
