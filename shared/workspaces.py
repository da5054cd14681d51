"""Workspaces (one per store) and their API keys, in the `platform` schema that shared/ manages.

A workspace has one write key (event ingestion; safe to embed in a site) and any number of secret
keys (management APIs). Keys are random 32-byte tokens, so they are stored as SHA-256 digests: a
slow password hash adds nothing against guessing a 256-bit secret and would cost every request.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import DateTime, Enum, ForeignKey, String, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from shared.clock import DEFAULT_TIMEZONE
from shared.db import PLATFORM_SCHEMA, Base


class KeyKind(enum.StrEnum):
    write = "write"
    secret = "secret"  # noqa: S105 - a kind of key, not a key


KEY_PREFIXES = {KeyKind.write: "dasi_wk_", KeyKind.secret: "dasi_sk_"}


class Workspace(Base):
    __tablename__ = "workspaces"
    __table_args__ = {"schema": PLATFORM_SCHEMA}  # noqa: RUF012

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(
        String(64), default=DEFAULT_TIMEZONE, server_default=DEFAULT_TIMEZONE
    )
    currency: Mapped[str] = mapped_column(String(3), default="KRW", server_default="KRW")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = {"schema": PLATFORM_SCHEMA}  # noqa: RUF012

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{PLATFORM_SCHEMA}.workspaces.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[KeyKind] = mapped_column(Enum(KeyKind, name="api_key_kind", schema=PLATFORM_SCHEMA))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    display_prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def new_raw_key(kind: KeyKind) -> str:
    return KEY_PREFIXES[kind] + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class NewWorkspace:
    workspace: Workspace
    write_key: str
    secret_key: str


async def create_workspace(
    session: AsyncSession, name: str, timezone: str = DEFAULT_TIMEZONE, currency: str = "KRW"
) -> NewWorkspace:
    workspace = Workspace(id=uuid.uuid4(), name=name, timezone=timezone, currency=currency)
    session.add(workspace)
    await session.flush()
    write_key = await add_key(session, workspace.id, KeyKind.write)
    secret_key = await add_key(session, workspace.id, KeyKind.secret)
    return NewWorkspace(workspace=workspace, write_key=write_key, secret_key=secret_key)


async def add_key(session: AsyncSession, workspace_id: uuid.UUID, kind: KeyKind) -> str:
    raw = new_raw_key(kind)
    session.add(ApiKey(workspace_id=workspace_id, kind=kind, key_hash=hash_key(raw), display_prefix=raw[:12]))
    await session.flush()
    return raw


async def find_workspace_by_key(session: AsyncSession, raw_key: str, kind: KeyKind) -> Workspace | None:
    stmt = (
        select(Workspace)
        .join(ApiKey, ApiKey.workspace_id == Workspace.id)
        .where(ApiKey.key_hash == hash_key(raw_key), ApiKey.kind == kind, ApiKey.revoked_at.is_(None))
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_workspace(session: AsyncSession, workspace_id: uuid.UUID) -> Workspace | None:
    return await session.get(Workspace, workspace_id)


async def update_workspace(
    session: AsyncSession, workspace_id: uuid.UUID, changes: dict[str, str]
) -> Workspace | None:
    workspace = await session.get(Workspace, workspace_id)
    if workspace is None:
        return None
    for field in ("name", "timezone", "currency"):
        if field in changes:
            setattr(workspace, field, changes[field])
    await session.flush()
    return workspace


async def list_workspaces(session: AsyncSession) -> list[Workspace]:
    return list((await session.execute(select(Workspace).order_by(Workspace.created_at))).scalars())


async def revoke_keys(session: AsyncSession, workspace_id: uuid.UUID, kind: KeyKind) -> None:
    await session.execute(
        update(ApiKey)
        .where(ApiKey.workspace_id == workspace_id, ApiKey.kind == kind, ApiKey.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
