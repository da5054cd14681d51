"""Recording tracking messages: dedupe by messageId, clock-skew correction, identity resolution,
then the events and their outbox row (published by the ingest worker, services/ingest/relay.py).
Runs inside its caller's transaction (a session's, or group commit's on the driver's connection),
which commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils import uuid7

from services.ingest import aggregates, consents, messages, repository
from services.ingest.identity import ANONYMOUS_ID, USER_ID, Ids, Key, Plan, Resolver
from services.ingest.repository import NewEvent
from services.ingest.schemas import (
    AliasMessage,
    GroupMessage,
    IdentifyMessage,
    PageMessage,
    ScreenMessage,
    TrackMessage,
)
from shared.db import driver_connection

# A message as the contract validated it (schemas.py), or as the batch's fast path did
# (messages.py): the same attributes. Read by its `type`, never by its class.
ContractMessage = TrackMessage | IdentifyMessage | PageMessage | ScreenMessage | GroupMessage | AliasMessage
Message = ContractMessage | messages.FastMessage


@dataclass
class Draft:
    """A valid message made ready to store."""

    event_id: str  # a time-ordered uuid (version 7), as text: what the statements and the JSON take
    message_id: str
    message: Message
    occurred_at: datetime
    context: dict[str, Any]
    ids: Ids  # the shopper ids it names (identity resolution and locks read them)
    made_at: float | None  # when it was made by the server's clock (Unix time), where known (dedupe.py)


@dataclass(frozen=True)
class Recorded:
    accepted: int
    duplicates: int


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@dataclass(frozen=True)
class _Clock:
    """When a request arrived, and its batch's clock skew (receivedAt - sentAt, worked out once)."""

    received_at: datetime
    batch_skew: timedelta | None

    @classmethod
    def of(cls, received_at: datetime, batch_sent_at: datetime | None) -> _Clock:
        skew = received_at - _aware(batch_sent_at) if batch_sent_at is not None else None
        return cls(received_at.astimezone(UTC), skew)

    def occurred_at(self, message: Message) -> datetime:
        """Segment's clock-skew correction: timestamp + (receivedAt - sentAt), both sent by the same
        (possibly wrong) device clock. Without a timestamp the event happened when it arrived."""
        if message.timestamp is None:
            return self.received_at
        timestamp = _aware(message.timestamp)
        if message.sent_at is not None:
            timestamp += self.received_at - _aware(message.sent_at)
        elif self.batch_skew is not None:
            timestamp += self.batch_skew
        # in UTC: two datetimes with one tzinfo object compare and subtract without asking it for
        # their offsets (pydantic's parsed zones are each their own object, and a Python call)
        return timestamp.astimezone(UTC)

    def made_at(self, message: Message, occurred_at: datetime) -> float | None:
        """When the message was made, by the server's clock: its corrected time, if it was corrected
        (both `timestamp` and `sentAt` given) and not later than its arrival (services/ingest/dedupe.py).
        As Unix time: asyncpg sends a float ~0.5 us faster than a datetime."""
        if message.timestamp is None or (message.sent_at is None and self.batch_skew is None):
            return None
        return occurred_at.timestamp() if occurred_at <= self.received_at else None


def _draft(message: Message, clock: _Clock, batch_context: dict[str, Any]) -> Draft:
    occurred_at = clock.occurred_at(message)
    return Draft(
        # time-ordered: the events' primary key index takes each at its end, where random ids
        # landed anywhere in it (~1.5 us an event of Postgres's time at 240,000 events, more as it grows)
        event_id=str(uuid7()),  # uuid_utils' own type: ~0.3 us an id, a stdlib UUID ~1.2
        message_id=message.message_id or str(uuid.uuid4()),
        message=message,
        occurred_at=occurred_at,
        context={**batch_context, **message.context} if batch_context else message.context,
        ids=_ids(message),
        made_at=clock.made_at(message, occurred_at),
    )


def _identify_traits(message: IdentifyMessage | messages.Identify) -> dict[str, Any]:
    """Segment SDKs send `traits`; RudderStack's Python SDK sends them only as `context.traits`."""
    if message.traits:
        return message.traits
    in_context = message.context.get("traits")
    return in_context if isinstance(in_context, dict) else {}


def _ids(message: Message) -> Ids:
    if message.type == "alias":
        return Ids(message.user_id, message.anonymous_id, previous_id=message.previous_id)
    traits = _identify_traits(message) if message.type == "identify" else None
    return Ids(message.user_id, message.anonymous_id, traits=traits)


def _keys(ids: Ids) -> list[Key]:
    keys: list[Key] = []
    if ids.user_id:
        keys.append((USER_ID, ids.user_id))
    if ids.anonymous_id:
        keys.append((ANONYMOUS_ID, ids.anonymous_id))
    if ids.previous_id:
        keys += [(USER_ID, ids.previous_id), (ANONYMOUS_ID, ids.previous_id)]
    return keys


def _name_and_properties(message: Message) -> tuple[str | None, dict[str, Any]]:
    if message.type == "track":
        return message.event, message.properties
    if message.type == "page" or message.type == "screen":
        if not message.category:
            return message.name, message.properties
        return message.name, {"category": message.category, **message.properties}
    if message.type == "identify":
        return None, _identify_traits(message)
    if message.type == "group":
        return message.group_id, message.traits
    return None, {"previousId": message.previous_id}


def _unique(drafts: Sequence[Draft]) -> list[Draft]:
    """The first of each messageId; a repeat inside one batch is a duplicate like any other."""
    seen: dict[str, Draft] = {}
    for draft in drafts:
        seen.setdefault(draft.message_id, draft)
    return list(seen.values())


def _resolve_profiles(drafts: Sequence[Draft], known: Sequence[repository.KnownIdentity]) -> Plan:
    resolver = Resolver(
        known={(k.kind, k.value): k.profile_id for k in known},
        users={k.profile_id: k.user_id for k in known},
    )
    return resolver.resolve([d.ids for d in drafts])


def _event(draft: Draft, profile_id: uuid.UUID) -> NewEvent:
    name, properties = _name_and_properties(draft.message)
    return NewEvent(
        id=draft.event_id,
        profile_id=profile_id,
        message_id=draft.message_id,
        type=draft.message.type,
        name=name,
        properties=properties,
        context=draft.context,
        occurred_at=draft.occurred_at,
    )


def drafts_of(
    messages: Sequence[Message],
    *,
    received_at: datetime,
    batch_sent_at: datetime | None = None,
    batch_context: dict[str, Any] | None = None,
) -> list[Draft]:
    """One request's valid messages made ready to store (its clock skew, its batch context)."""
    clock = _Clock.of(received_at, batch_sent_at)
    return [_draft(m, clock, batch_context or {}) for m in messages]


async def record_messages(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    messages: Sequence[Message],
    *,
    timezone: str,
    received_at: datetime,
    batch_sent_at: datetime | None = None,
    batch_context: dict[str, Any] | None = None,
) -> Recorded:
    """Store valid messages of one workspace, with their outbox row (the ingest worker
    publishes those); returns how many were accepted and how many were repeats.

    A messageId seen before (in this batch or any earlier call) is accepted and ignored.
    """
    drafts = drafts_of(
        messages, received_at=received_at, batch_sent_at=batch_sent_at, batch_context=batch_context
    )
    [recorded] = await record_drafts(
        await driver_connection(session), workspace_id, [drafts], timezone=timezone, received_at=received_at
    )
    return recorded


async def record_drafts(
    connection: asyncpg.Connection,
    workspace_id: uuid.UUID,
    parts: Sequence[Sequence[Draft]],
    *,
    timezone: str,
    received_at: datetime,
) -> list[Recorded]:
    """Store the drafts of several requests of one workspace in the connection's transaction, as one batch
    (services/ingest/group_commit.py gathers them); returns what each part counted. A messageId
    repeated across parts counts for the first part that carries it."""
    drafts = _unique([d for part in parts for d in part])
    # Lock every id the batch names before claiming messageIds: requests sharing a shopper (and so
    # any retried message) then run one after the other, and nothing waits in a cycle.
    all_keys = sorted({key for d in drafts for key in _keys(d.ids)})
    claimed = await repository.lock_claim_and_find(connection, workspace_id, drafts, all_keys)
    fresh = [d for d in drafts if d.message_id not in claimed.repeats]
    plan = _resolve_profiles(fresh, claimed.known)
    events = [_event(draft, profile) for draft, profile in zip(fresh, plan.profile_of_message, strict=True)]
    given = [c for e in events for c in consents.consents_of(e)]
    if plan.merges:
        await _store_with_merges(
            connection, workspace_id, timezone, received_at, plan, events, given, claimed
        )
    else:  # the events, the aggregates, the consents and the flags: one round trip
        await repository.store_batch(
            connection,
            workspace_id,
            repository.identity_rows(plan, events, received_at),
            aggregates.rows_of(events, given, claimed.last_seen, timezone),
            flagged={*plan.traits, *(c.profile_id for c in given)},
        )
    stored = {id(d) for d in fresh}
    return [Recorded(accepted=len(part), duplicates=sum(id(d) not in stored for d in part)) for part in parts]


async def _store_with_merges(
    connection: asyncpg.Connection,
    workspace_id: uuid.UUID,
    timezone: str,
    received_at: datetime,
    plan: Plan,
    events: Sequence[NewEvent],
    given: Sequence[consents.Consent],
    claimed: repository.Claimed,
) -> None:
    """A batch whose identity resolution merges profiles: the merges move events between profiles
    after the batch's own are written, and the merged profiles are rebuilt from all their events."""
    await repository.store_batch(
        connection, workspace_id, repository.identity_rows(plan, events, received_at)
    )
    await repository.apply_merges(connection, workspace_id, plan, received_at)
    merged = sorted({target for _source, target in plan.merges})
    await aggregates.recompute(connection, workspace_id, timezone, merged)
    unmerged = [e for e in events if e.profile_id not in merged]
    await repository.store_batch(
        connection,
        workspace_id,
        aggregates=aggregates.rows_of(unmerged, given, claimed.last_seen, timezone),
        flagged={*plan.traits, *(c.profile_id for c in given), *merged},
    )
