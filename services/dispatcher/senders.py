"""Sender profiles: who a workspace sends as (store name, registered numbers, Kakao key, 080, email).

The verified flags mirror the provider's registration state (발신번호 사전등록, 080 registration,
the ESP's domain check). In production a provider sync or an operator sets them; the API lets an
operator set them by hand. Only a verified number may send (C12).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.adform import Sender
from services.dispatcher.models import SenderProfile
from services.dispatcher.policy import KAKAO_CUTOFF, SenderRules
from services.dispatcher.suppressions import normalize_phone
from shared.errors import Conflict, NotFound

FIELDS = (
    "name",
    "is_default",
    "store_name",
    "sender_numbers",
    "opt_out_number",
    "opt_out_verified",
    "kakao_sender_key",
    "kakao_channel_id",
    "kakao_ad_cutoff",
    "email_from",
    "email_from_name",
    "email_verified",
)


def adform_sender(profile: SenderProfile) -> Sender:
    """What adform.py needs: the store name and the 080 number."""
    return Sender(profile.store_name, profile.opt_out_number if profile.opt_out_verified else None)


def sender_rules(profile: SenderProfile) -> SenderRules:
    """What policy.py needs: verified numbers, 080, Kakao key, email sender, Kakao cut-off."""
    return SenderRules(
        registered_numbers=frozenset(
            normalize_phone(str(n["number"])) for n in profile.sender_numbers if n.get("verified")
        ),
        opt_out_number=profile.opt_out_number if profile.opt_out_verified else None,
        kakao_sender_key=profile.kakao_sender_key,
        email_from_verified=bool(profile.email_from and profile.email_verified),
        kakao_ad_cutoff=profile.kakao_ad_cutoff or KAKAO_CUTOFF,
    )


def _normalized(changes: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in changes.items() if k in FIELDS}
    if "sender_numbers" in out and out["sender_numbers"] is not None:
        out["sender_numbers"] = [
            {"number": normalize_phone(str(n["number"])), "verified": bool(n.get("verified", False))}
            for n in out["sender_numbers"]
        ]
    if out.get("opt_out_number"):
        out["opt_out_number"] = normalize_phone(out["opt_out_number"])
    if "kakao_ad_cutoff" in out and out["kakao_ad_cutoff"] is None:
        out["kakao_ad_cutoff"] = KAKAO_CUTOFF
    return out


async def _unset_other_defaults(session: AsyncSession, workspace_id: uuid.UUID, keep: uuid.UUID) -> None:
    await session.execute(
        update(SenderProfile)
        .where(SenderProfile.workspace_id == workspace_id, SenderProfile.id != keep)
        .values(is_default=False)
    )


async def _flush_unique(session: AsyncSession, name: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a sender profile named {name!r} already exists in this workspace") from exc


async def create_sender_profile(
    session: AsyncSession, workspace_id: uuid.UUID, now: datetime, fields: Mapping[str, Any]
) -> SenderProfile:
    values = _normalized(fields)
    values.setdefault("kakao_ad_cutoff", KAKAO_CUTOFF)
    values.setdefault("sender_numbers", [])
    for flag in ("is_default", "opt_out_verified", "email_verified"):
        values[flag] = bool(values.get(flag, False))
    existing = await list_sender_profiles(session, workspace_id)
    if not existing:
        values["is_default"] = True  # the first profile is the default
    profile = SenderProfile(
        id=uuid.uuid4(), workspace_id=workspace_id, created_at=now, updated_at=now, **values
    )
    async with session.begin_nested():
        session.add(profile)
        await _flush_unique(session, profile.name)
    if profile.is_default:
        await _unset_other_defaults(session, workspace_id, profile.id)
    return profile


async def list_sender_profiles(session: AsyncSession, workspace_id: uuid.UUID) -> list[SenderProfile]:
    stmt = (
        select(SenderProfile)
        .where(SenderProfile.workspace_id == workspace_id)
        .order_by(SenderProfile.created_at, SenderProfile.id)
    )
    return list((await session.execute(stmt)).scalars())


async def get_sender_profile(
    session: AsyncSession, workspace_id: uuid.UUID, profile_id: uuid.UUID | None = None
) -> SenderProfile:
    """The profile (the workspace's default when `profile_id` is None); NotFound otherwise."""
    stmt = select(SenderProfile).where(SenderProfile.workspace_id == workspace_id)
    stmt = (
        stmt.where(SenderProfile.id == profile_id)
        if profile_id is not None
        else stmt.where(SenderProfile.is_default)
    )
    profile = (await session.execute(stmt)).scalars().first()
    if profile is None:
        raise NotFound("no such sender profile" if profile_id else "this workspace has no sender profile")
    return profile


async def update_sender_profile(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    profile_id: uuid.UUID,
    now: datetime,
    changes: Mapping[str, Any],
) -> SenderProfile:
    profile = await get_sender_profile(session, workspace_id, profile_id)
    for key, value in _normalized(changes).items():
        setattr(profile, key, value)
    profile.updated_at = now
    async with session.begin_nested():
        await _flush_unique(session, profile.name)
    if profile.is_default:
        await _unset_other_defaults(session, workspace_id, profile.id)
    return profile


async def delete_sender_profile(
    session: AsyncSession, workspace_id: uuid.UUID, profile_id: uuid.UUID
) -> None:
    profile = await get_sender_profile(session, workspace_id, profile_id)
    await session.delete(profile)
    await session.flush()
