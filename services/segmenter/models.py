"""The tables the segmenter owns, in the `segmenter` schema: saved segments, cohorts (static lists)
and materialized memberships with their entered / exited history."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import PLATFORM_SCHEMA, Base

SCHEMA = "segmenter"
DEFAULT_REFRESH_MINUTES = 60

_WORKSPACE_FK = f"{PLATFORM_SCHEMA}.workspaces.id"


class Segment(Base):
    """A saved audience: a definition (services/segmenter/definition.py) with a name.

    `refresh_every_minutes`: how often the worker recomputes its membership (None: on demand only).
    """

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("workspace_id", "name"), {"schema": SCHEMA})

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(_WORKSPACE_FK, ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    refresh_every_minutes: Mapped[int | None] = mapped_column(Integer)


class Cohort(Base):
    """A static list of a workspace's profiles (a CSV upload or a list of user ids)."""

    __tablename__ = "cohorts"
    __table_args__ = (UniqueConstraint("workspace_id", "name"), {"schema": SCHEMA})

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(_WORKSPACE_FK, ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))  # csv, json
    member_count: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CohortMember(Base):
    __tablename__ = "cohort_members"
    __table_args__ = {"schema": SCHEMA}  # noqa: RUF012

    cohort_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{SCHEMA}.cohorts.id", ondelete="CASCADE"), primary_key=True
    )
    profile_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID]


class Membership(Base):
    """A profile in a saved segment now (since `entered_at`), as the last refresh found it.

    No foreign key to `segments` here nor on `membership_changes`: a refresh writes up to a
    million rows, and the per-row FK trigger cost ~6 us each (seconds at that size; see
    BENCHMARKS.md). Deleting a segment deletes its rows explicitly (repository.delete_segment).
    """

    __tablename__ = "memberships"
    __table_args__ = {"schema": SCHEMA}  # noqa: RUF012

    segment_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    profile_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    workspace_id: Mapped[uuid.UUID]
    entered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MembershipChange(Base):
    """A profile entered or exited a saved segment. `seq` only grows: a reader's cursor.

    Two indexes only, as a first refresh writes a row per member: the primary key (segment_id, seq)
    serves cursors, and a BRIN index on `at` (rows arrive in time order; a few pages of index)
    serves "since a time".
    """

    __tablename__ = "membership_changes"
    __table_args__ = (
        CheckConstraint("change IN ('entered', 'exited')", name="change"),
        Index("ix_segmenter_membership_changes_at", "at", postgresql_using="brin"),
        {"schema": SCHEMA},
    )

    segment_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    workspace_id: Mapped[uuid.UUID]
    profile_id: Mapped[uuid.UUID]
    change: Mapped[str] = mapped_column(String(8))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SegmentRefresh(Base):
    """The latest full refresh of a saved segment (absent: never materialized)."""

    __tablename__ = "segment_refreshes"
    __table_args__ = {"schema": SCHEMA}  # noqa: RUF012

    segment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{SCHEMA}.segments.id", ondelete="CASCADE"), primary_key=True
    )
    workspace_id: Mapped[uuid.UUID]
    refreshed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    member_count: Mapped[int] = mapped_column(Integer)
    entered: Mapped[int] = mapped_column(Integer)
    exited: Mapped[int] = mapped_column(Integer)
    took_ms: Mapped[float]
