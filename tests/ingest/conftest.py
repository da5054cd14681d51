"""Ingest test helpers: the app on a frozen clock, write-key headers, and readers for the rows
and the stream entries a test asserts on (after running the outbox publisher: `published`)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from sqlalchemy import select

from services.ingest.drafts import Draft, drafts_of
from services.ingest.main import create_app
from services.ingest.models import Event, Identity, OutboxBatch, Profile
from services.ingest.relay import drain_outbox
from services.ingest.schemas import TrackMessage
from shared.contracts import EventRecorded, EventsRecorded, decode, recorded_events
from shared.db import session_scope
from shared.testing.fixtures import serve


def write_key(key: str) -> dict[str, str]:
    """Segment's convention: the write key as the Basic username, empty password."""
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@pytest.fixture
async def shop(make_workspace):
    return await make_workspace("다시 스토어")


@pytest_asyncio.fixture
async def client(settings, clock, db, redis, shop) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the ingest app that sends `shop`'s write key."""
    async with serve(create_app(settings, clock=clock), headers=write_key(shop.write_key)) as http:
        yield http


async def events_of(db, workspace_id: uuid.UUID) -> list[Event]:
    async with session_scope(db) as session:
        rows = await session.scalars(
            select(Event).where(Event.workspace_id == workspace_id).order_by(Event.occurred_at, Event.name)
        )
        return list(rows)


async def profiles_of(db, workspace_id: uuid.UUID) -> list[Profile]:
    async with session_scope(db) as session:
        return list(await session.scalars(select(Profile).where(Profile.workspace_id == workspace_id)))


async def identities_of(db, workspace_id: uuid.UUID) -> dict[tuple[str, str], uuid.UUID]:
    async with session_scope(db) as session:
        rows = await session.scalars(select(Identity).where(Identity.workspace_id == workspace_id))
        return {(i.kind, i.value): i.profile_id for i in rows}


async def unpublished(db) -> list[uuid.UUID]:
    """The events stored and not yet published: those the outbox rows name."""
    async with session_scope(db) as session:
        rows = await session.scalars(select(OutboxBatch))
        return [uuid.UUID(event["event_id"]) for row in rows for event in orjson.loads(row.body)]


async def stream_events(redis, stream: str = "dasi:events") -> list[EventRecorded]:
    """The events the stream announces, each entry read with the contract it was written with."""
    messages = [decode(fields) for _id, fields in await redis.xrange(stream)]
    assert all(isinstance(m, EventsRecorded) for m in messages)
    return [event for m in messages for event in recorded_events(m)]


async def published(db, redis, stream: str = "dasi:events") -> list[EventRecorded]:
    """Run the ingest worker's publisher once (drain the outbox), then read the stream."""
    await drain_outbox(db, redis, stream)
    return await stream_events(redis, stream)


def track(event: str = "Product Viewed", **fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": event, "properties": {"product": "수분크림", "price": 28000}, **fields}


def track_drafts(
    *message_ids: str,
    user: str = "member-1",
    received_at: datetime = datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
) -> list[Draft]:
    """One request's drafts, as the route makes them: a track of a product view a messageId."""
    messages = [
        TrackMessage.model_validate(
            {
                "type": "track",
                "userId": user,
                "event": "Product Viewed",
                "messageId": message_id,
                "properties": {"product_id": "P1", "name": "수분크림"},
            }
        )
        for message_id in message_ids
    ]
    return drafts_of(messages, received_at=received_at)
