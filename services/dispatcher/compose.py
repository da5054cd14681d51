"""The seam between the send pipeline and the message rules: for a batch of messages, each on the
channel it is to go out on now, say send (with the rendered `Outgoing`), defer (until when, why) or
skip (why). Recipients are loaded for the whole batch at once.

The pipeline depends only on the `Composer` protocol; `services/dispatcher/composer.py` implements
it with the rendering, ad form, sizing, policy and recipient loader of the message rules.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.providers.base import Channel, Outgoing


@dataclass(slots=True)
class ComposeItem:
    """One message to prepare on one channel. Not frozen: one is built per message and step, and a
    frozen dataclass sets each of its fields through object.__setattr__ (4x the cost)."""

    message_id: uuid.UUID
    channel: Channel
    kind: str  # campaign, trigger, transactional, test
    profile_id: uuid.UUID | None
    address: str | None  # a direct address: phone, push token or email
    template_id: uuid.UUID | None  # the template for this channel
    content: Mapping[str, Any] | None  # inline Liquid source: {"body": ..., "subject": ...}
    variables: Mapping[str, Any] = field(default_factory=dict)
    is_ad: bool = False
    night_policy: str = "defer"
    campaign_id: uuid.UUID | None = None
    idempotency_key: str = ""  # what the provider is given for this attempt
    # a Kakao message's next channel (SMS/LMS) when the provider is to run that fallback itself
    fallback: Channel | None = None
    fallback_template_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Prepared:
    action: Literal["send", "defer", "skip"]
    outgoing: Outgoing | None = None  # send
    reason: str | None = None  # defer / skip: e.g. "night_window", "no_marketing_consent", "suppressed"
    not_before: datetime | None = None  # defer


class Composer(Protocol):
    async def compose(
        self, session: AsyncSession, workspace_id: uuid.UUID, items: Sequence[ComposeItem], now: datetime
    ) -> list[Prepared]:
        """One Prepared per item, in order. Never raises for one bad message: skip it with a reason."""
        ...

    async def suppress(
        self,
        session: AsyncSession,
        workspace_id: uuid.UUID,
        channel: Channel,
        address: str,
        reason: str,
        now: datetime,
    ) -> None:
        """An opt-out reported by a provider (080, unsubscribe): suppress the address at once."""
        ...
