"""Recording tracking messages: dedupe by messageId, identity resolution, then the events, their
aggregates and their outbox row (published by the ingest worker, services/ingest/relay.py). The
messages come as drafts (drafts.py: clock-skew correction and all that does not need the database,
done as each request arrives). Runs inside its caller's transaction (a session's, or group
commit's on the driver's connection), which commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest import aggregates, repository
from services.ingest.consents import Consent
from services.ingest.drafts import Draft, Message, drafts_of, placed
from services.ingest.facts import Fact
from services.ingest.identity import Plan, Resolver
from shared.db import driver_connection


@dataclass(frozen=True)
class Recorded:
    accepted: int
    duplicates: int


def _unique(parts: Sequence[Sequence[Draft]]) -> list[list[Draft]]:
    """Each part's drafts but those whose messageId an earlier draft had; a repeat inside one batch
    is a duplicate like any other."""
    seen: set[str] = set()
    unique: list[list[Draft]] = []
    for part in parts:
        kept = []
        for draft in part:
            if draft.message_id not in seen:
                seen.add(draft.message_id)
                kept.append(draft)
        unique.append(kept)
    return unique


def _resolve_profiles(drafts: Sequence[Draft], known: Sequence[repository.KnownIdentity]) -> Plan:
    resolver = Resolver(
        known={(k.kind, k.value): k.profile_id for k in known},
        users={k.profile_id: k.user_id for k in known},
    )
    return resolver.resolve([d.ids for d in drafts])


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
    unique = _unique(parts)
    drafts = [d for part in unique for d in part]
    # Lock every id the batch names before claiming messageIds: requests sharing a shopper (and so
    # any retried message) then run one after the other, and nothing waits in a cycle.
    all_keys = sorted({key for d in drafts for key in d.keys})
    claimed = await repository.lock_claim_and_find(connection, workspace_id, unique, all_keys)
    fresh = [d for d in drafts if d.message_id not in claimed.repeats]
    plan = _resolve_profiles(fresh, claimed.known)
    for draft, profile in zip(fresh, plan.profile_of_message, strict=True):
        draft.place(profile)
    facts = [d.fact for d in fresh if d.fact is not None]
    given = [c for d in fresh for c in d.consents]
    if plan.merges:
        await _store_with_merges(
            connection, workspace_id, timezone, received_at, plan, fresh, facts, given, claimed
        )
    else:  # the events, the aggregates, the consents and the flags: one round trip
        await repository.store_batch(
            connection,
            workspace_id,
            _identity_rows(plan, fresh, received_at),
            aggregates.rows_of(facts, given, claimed.last_seen, timezone),
            flagged={*plan.traits, *(c.profile_id for c in given)},
        )
    stored = {id(d) for d in fresh}
    return [Recorded(accepted=len(part), duplicates=sum(id(d) not in stored for d in part)) for part in parts]


def _identity_rows(plan: Plan, drafts: list[Draft], received_at: datetime) -> repository.IdentityRows:
    if not drafts:
        return repository.identity_rows(plan, None, [], (), received_at)
    rows = placed(drafts, repository.EVENTS_PER_ENTRY)
    return repository.identity_rows(plan, rows.events, rows.outbox, rows.profiles, received_at)


async def _store_with_merges(
    connection: asyncpg.Connection,
    workspace_id: uuid.UUID,
    timezone: str,
    received_at: datetime,
    plan: Plan,
    placed: list[Draft],
    facts: Sequence[Fact],
    given: Sequence[Consent],
    claimed: repository.Claimed,
) -> None:
    """A batch whose identity resolution merges profiles: the merges move events between profiles
    after the batch's own are written, and the merged profiles are rebuilt from all their events."""
    await repository.store_batch(connection, workspace_id, _identity_rows(plan, placed, received_at))
    await repository.apply_merges(connection, workspace_id, plan, received_at)
    merged = sorted({target for _source, target in plan.merges})
    await aggregates.recompute(connection, workspace_id, timezone, merged)
    unmerged = [f for f in facts if f.profile_id not in merged]
    await repository.store_batch(
        connection,
        workspace_id,
        aggregates=aggregates.rows_of(unmerged, given, claimed.last_seen, timezone),
        flagged={*plan.traits, *(c.profile_id for c in given), *merged},
    )
