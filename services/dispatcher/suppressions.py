"""The suppression list: addresses that must not be sent to (DOMAIN C7).

Opt-outs go in at once and adding is idempotent (a repeated 080 webhook or a double click on the
email unsubscribe link changes nothing): `(workspace, address, channel)` is unique and inserts are
ON CONFLICT DO NOTHING. A suppression covers one channel family (sms = SMS/LMS/MMS, kakao, push,
email) or "all"; its address is normalized the way recipients.py reads profiles, so they match:
phone digits (+82 10... -> 010...), lower-case email, a push token as is, or `profile:<id>`.
Every function is scoped by workspace; they flush, never commit.

An opt-out (a 080 call, a one-click email unsubscribe) withdraws consent to advertising, so it
stops ads only: order and delivery notices still go. A provider's word that the address is dead
(bad number, bounce) and a manual entry stop everything.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, select, text
from sqlalchemy.dialects.postgresql import ARRAY, TEXT, insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.models import SUPPRESSION_CHANNELS, SUPPRESSION_SOURCES, Suppression

AD_OPT_OUTS = frozenset({"080", "email_one_click"})  # sources that stop advertising only

# the same normalization in SQL (recipients.py) and in Python (normalize_phone)
PHONE_SQL = r"regexp_replace(regexp_replace({value}, '\D', '', 'g'), '^82(1\d{{8,9}})$', '0\1')"
_KOREAN_MOBILE_INTL = re.compile(r"^82(1\d{8,9})$")


def normalize_phone(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    return _KOREAN_MOBILE_INTL.sub(r"0\1", digits)


def normalize_email(value: str) -> str:
    return value.strip().lower()


def normalize_address(channel: str, address: str) -> str:
    """The stored form of `address` for a suppression on `channel`."""
    address = address.strip()
    if address.startswith("profile:"):
        return address
    if channel == "email" or (channel == "all" and "@" in address):
        return normalize_email(address)
    if channel in ("sms", "kakao") or (channel == "all" and re.fullmatch(r"[+\d\s()-]{8,20}", address)):
        return normalize_phone(address)
    return address


@dataclass(frozen=True)
class NewSuppression:
    channel: str  # "all", "sms", "kakao", "push", "email"
    address: str
    source: str  # "080", "email_one_click", "provider", "manual"
    reason: str | None = None
    profile_id: uuid.UUID | None = None

    def __post_init__(self) -> None:
        if self.channel not in SUPPRESSION_CHANNELS:
            raise ValueError(f"unknown suppression channel {self.channel!r}")
        if self.source not in SUPPRESSION_SOURCES:
            raise ValueError(f"unknown suppression source {self.source!r}")


async def add_suppressions(
    session: AsyncSession, workspace_id: uuid.UUID, entries: Iterable[NewSuppression], now: datetime
) -> int:
    """Add every entry in one statement; ones already there are left as they are. Returns how many
    were new."""
    rows = [
        {
            "id": uuid.uuid4(),
            "workspace_id": workspace_id,
            "channel": e.channel,
            "address": normalize_address(e.channel, e.address),
            "profile_id": e.profile_id,
            "reason": e.reason,
            "source": e.source,
            "created_at": now,
        }
        for e in entries
    ]
    rows = [r for r in rows if r["address"]]
    if not rows:
        return 0
    stmt = (
        insert(Suppression)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["workspace_id", "address", "channel"])
        .returning(Suppression.id)
    )
    return len((await session.execute(stmt)).all())


async def add_suppression(
    session: AsyncSession, workspace_id: uuid.UUID, entry: NewSuppression, now: datetime
) -> tuple[Suppression, bool]:
    """Add one (idempotent); returns the row, and whether it is new."""
    created = await add_suppressions(session, workspace_id, [entry], now)
    row = (
        await session.execute(
            select(Suppression).where(
                Suppression.workspace_id == workspace_id,
                Suppression.address == normalize_address(entry.channel, entry.address),
                Suppression.channel == entry.channel,
            )
        )
    ).scalar_one()
    return row, created > 0


_SUPPRESSED = text("""
    SELECT DISTINCT address FROM dispatcher.suppressions
    WHERE workspace_id = :workspace_id AND address = ANY(:addresses) AND channel = ANY(:channels)
""").bindparams(
    bindparam("addresses", type_=ARRAY(TEXT)),
    bindparam("channels", type_=ARRAY(TEXT)),
)


async def suppressed_addresses(
    session: AsyncSession, workspace_id: uuid.UUID, family: str, addresses: Sequence[str]
) -> set[str]:
    """Which of `addresses` (already normalized) are suppressed for the channel family, in one query."""
    if not addresses:
        return set()
    rows = await session.execute(
        _SUPPRESSED,
        {"workspace_id": workspace_id, "addresses": list(set(addresses)), "channels": [family, "all"]},
    )
    return {row.address for row in rows}


async def is_suppressed(session: AsyncSession, workspace_id: uuid.UUID, family: str, address: str) -> bool:
    return bool(await suppressed_addresses(session, workspace_id, family, [address]))


async def list_suppressions(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    *,
    channel: str | None = None,
    address: str | None = None,
    limit: int = 50,
    before: datetime | None = None,
) -> list[Suppression]:
    """Newest first; `before` pages on (the `created_at` of the last row of the previous page)."""
    stmt = select(Suppression).where(Suppression.workspace_id == workspace_id)
    if channel:
        stmt = stmt.where(Suppression.channel == channel)
    if address:
        stmt = stmt.where(Suppression.address == normalize_address(channel or "all", address))
    if before is not None:
        stmt = stmt.where(Suppression.created_at < before)
    stmt = stmt.order_by(Suppression.created_at.desc(), Suppression.id).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def get_suppression(
    session: AsyncSession, workspace_id: uuid.UUID, suppression_id: uuid.UUID
) -> Suppression | None:
    row = await session.get(Suppression, suppression_id)
    return row if row is not None and row.workspace_id == workspace_id else None


async def remove_suppression(
    session: AsyncSession, workspace_id: uuid.UUID, suppression_id: uuid.UUID
) -> bool:
    result = await session.execute(
        delete(Suppression)
        .where(Suppression.workspace_id == workspace_id, Suppression.id == suppression_id)
        .returning(Suppression.id)
    )
    return result.first() is not None
