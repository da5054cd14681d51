"""The tables the dispatcher owns, in the `dispatcher` schema.

Content and compliance (migration 0007): message templates (with the Kakao review state of alimtalk
templates), sender profiles (store name, registered sender numbers, Kakao sender key, 080 opt-out
number, email sender) and the suppression list.

Messages and delivery attempts follow below (appended by the send pipeline).
"""

from __future__ import annotations

import uuid
from datetime import datetime, time
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
    Time,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import PLATFORM_SCHEMA, Base

SCHEMA = "dispatcher"

# what a template is written for; "sms" is 문자: SMS, LMS or MMS is chosen by size at render time
TEMPLATE_CHANNELS = ("alimtalk", "friendtalk", "brand_message", "sms", "push", "email")
REVIEW_STATES = ("registered", "under_review", "approved", "rejected")
# a suppression covers one channel family (the consent topics) or all of them
SUPPRESSION_CHANNELS = ("all", "sms", "kakao", "push", "email")
SUPPRESSION_SOURCES = ("080", "email_one_click", "provider", "manual")

_EMPTY_JSON = text("'{}'::jsonb")
_EMPTY_ARRAY = text("'[]'::jsonb")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _workspace_fk() -> ForeignKey:
    return ForeignKey(f"{PLATFORM_SCHEMA}.workspaces.id", ondelete="CASCADE")


class Template(Base):
    """A message template in Liquid (services/dispatcher/rendering.py), checked when saved.

    Alimtalk templates carry Kakao's review (검수) state: registered -> under_review -> approved or
    rejected; `review_history` keeps every transition ({"state", "at", "reason"}). Only an approved
    alimtalk template is sent. Editing an alimtalk template's content sends it back to registered.
    """

    __tablename__ = "templates"
    __table_args__ = (
        UniqueConstraint("workspace_id", "name"),
        CheckConstraint(_in("channel", TEMPLATE_CHANNELS), name="channel"),
        CheckConstraint(f"review_state IS NULL OR {_in('review_state', REVIEW_STATES)}", name="review_state"),
        CheckConstraint("channel <> 'alimtalk' OR NOT is_ad", name="alimtalk_not_ad"),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    workspace_id: Mapped[uuid.UUID] = mapped_column(_workspace_fk())
    name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(16))
    is_ad: Mapped[bool] = mapped_column(Boolean)
    body: Mapped[str] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(String(200))  # LMS/MMS subject, email subject, push title
    fallback_body: Mapped[str | None] = mapped_column(Text)  # the SMS text for a Kakao message (대체문자)
    image_url: Mapped[str | None] = mapped_column(String(2000))
    buttons: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=_EMPTY_ARRAY)
    variables: Mapped[dict[str, str]] = mapped_column(JSONB, server_default=_EMPTY_JSON)  # path -> default
    alimtalk_template_code: Mapped[str | None] = mapped_column(String(64))
    review_state: Mapped[str | None] = mapped_column(String(16))  # alimtalk only
    review_reason: Mapped[str | None] = mapped_column(Text)  # why Kakao rejected it
    review_history: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=_EMPTY_ARRAY)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SenderProfile(Base):
    """Who a workspace sends as: the store's name, its registered sender numbers (발신번호 사전등록,
    `[{"number": "0212345678", "verified": true}]`), Kakao sender key, 080 opt-out number, email sender,
    and its own Kakao marketing cut-off (Kakao accepts until 20:50; many stores stop at 20:00)."""

    __tablename__ = "sender_profiles"
    __table_args__ = (UniqueConstraint("workspace_id", "name"), {"schema": SCHEMA})

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    workspace_id: Mapped[uuid.UUID] = mapped_column(_workspace_fk())
    name: Mapped[str] = mapped_column(String(200))
    is_default: Mapped[bool] = mapped_column(Boolean, server_default="false")
    store_name: Mapped[str] = mapped_column(String(100))
    sender_numbers: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=_EMPTY_ARRAY)
    opt_out_number: Mapped[str | None] = mapped_column(String(20))
    opt_out_verified: Mapped[bool] = mapped_column(Boolean, server_default="false")
    kakao_sender_key: Mapped[str | None] = mapped_column(String(100))
    kakao_channel_id: Mapped[str | None] = mapped_column(String(100))  # "@dasi"
    kakao_ad_cutoff: Mapped[time] = mapped_column(Time, server_default="20:50")
    email_from: Mapped[str | None] = mapped_column(String(320))
    email_from_name: Mapped[str | None] = mapped_column(String(100))
    email_verified: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Suppression(Base):
    """An address that must not be sent to on a channel family (or on all): opt-outs by 080 call,
    one-click email unsubscribe, provider codes, or by hand. `address` is what the channel sends to,
    normalized: phone digits, lower-case email, push token, or `profile:<id>` for a whole profile."""

    __tablename__ = "suppressions"
    __table_args__ = (
        UniqueConstraint("workspace_id", "address", "channel"),
        CheckConstraint(_in("channel", SUPPRESSION_CHANNELS), name="channel"),
        CheckConstraint(_in("source", SUPPRESSION_SOURCES), name="source"),
        Index("ix_dispatcher_suppressions_workspace_id_created_at", "workspace_id", "created_at"),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    workspace_id: Mapped[uuid.UUID] = mapped_column(_workspace_fk())
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(512))
    profile_id: Mapped[uuid.UUID | None]
    reason: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


# --- messages and delivery attempts (the send pipeline) ---------------------------------------------
from services.dispatcher.message_models import DeliveryAttempt, DeliveryReport, Message  # noqa: E402, F401
