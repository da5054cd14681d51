"""SQL of the send pipeline: set-based statements over a batch of messages at a time."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatcher.message_models import DeliveryAttempt, DeliveryReport, Message
from services.dispatcher.providers.base import Channel, Outgoing, ProviderFallback
from shared.contracts import SendRequest
from shared.db import driver_connection
from shared.workspaces import Workspace

_ID_NAMESPACE = uuid.UUID("5b0f3e0a-4c36-4f8e-9d0e-6d61736921aa")
_NAMESPACE_BYTES = _ID_NAMESPACE.bytes


def message_id_for(workspace_id: uuid.UUID, idempotency_key: str) -> uuid.UUID:
    """Deterministic: the same request (workspace, key) always names the same message."""
    name = f"{workspace_id}:{idempotency_key}".encode()
    digest = hashlib.sha1(_NAMESPACE_BYTES + name, usedforsecurity=False).digest()
    return uuid_with_version(int.from_bytes(digest[:16]), 5)  # uuid.uuid5, at a third of its cost


def uuid_with_version(value: int, version: int) -> uuid.UUID:
    """`uuid.UUID(bytes=..., version=...)` from the 128-bit int: the same bits, fewer checks (one is
    made per message and per attempt)."""
    value = (value & ~(0xC000 << 48)) | (0x8000 << 48)  # the RFC 4122 variant
    return uuid.UUID(int=(value & ~(0xF000 << 64)) | (version << 76))


def message_kind(request: SendRequest) -> str:
    if request.campaign_id is not None:
        return "campaign"
    if request.trigger_id is not None:
        return "trigger"
    return "test" if request.to is not None else "transactional"


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


_INSERT_MESSAGES = """
INSERT INTO dispatcher.messages (id, workspace_id, idempotency_key, kind, profile_id, address,
    campaign_id, trigger_id, step, chain, chain_pos, tries, template_id, templates, content, variables, is_ad,
    night_policy, status, cost_krw, enqueued_at, created_at, updated_at)
SELECT u.id, $1, u.key, u.kind, u.profile_id, u.address, u.campaign_id, u.trigger_id, u.step,
    string_to_array(u.chain, ','), 0, 0, u.template_id, u.templates::jsonb, u.content::jsonb,
    u.variables::jsonb, u.is_ad, u.night_policy, 'queued', 0, u.enqueued_at, $2, $2
FROM unnest($3::uuid[], $4::text[], $5::text[], $6::uuid[], $7::text[], $8::uuid[], $9::uuid[], $10::text[],
    $11::text[], $12::uuid[], $13::text[], $14::text[], $15::text[], $16::bool[], $17::text[],
    $18::timestamptz[])
    AS u(id, key, kind, profile_id, address, campaign_id, trigger_id, step, chain, template_id, templates,
         content, variables, is_ad, night_policy, enqueued_at)
ON CONFLICT (workspace_id, idempotency_key) DO NOTHING
RETURNING id
"""


async def insert_messages(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    requests: Sequence[SendRequest],
    now: datetime,
    *,
    enqueued_at: datetime | None = None,
    kind: str | None = None,
) -> tuple[list[uuid.UUID], int]:
    """Insert one queued message per request in one statement; a key seen before is ignored.
    Returns every request's message id (new or old), in order, and how many were new."""
    ids, new = await insert_requests(
        session, workspace_id, requests, [enqueued_at] * len(requests), now, kind=kind
    )
    return ids, len(new)


async def insert_requests(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    requests: Sequence[SendRequest],
    enqueued_at: Sequence[datetime | None],
    now: datetime,
    *,
    kind: str | None = None,
) -> tuple[list[uuid.UUID], set[uuid.UUID]]:
    """`insert_messages` with an enqueue time per request (several batches of one workspace in one
    statement). Returns every request's message id, in order, and the set of those that are new."""
    ids = [message_id_for(workspace_id, r.idempotency_key) for r in requests]
    rs = requests
    conn = await driver_connection(session)
    rows = await conn.fetch(
        _INSERT_MESSAGES,
        workspace_id,
        now,
        ids,
        [r.idempotency_key for r in rs],
        [kind or message_kind(r) for r in rs],
        [r.profile_id for r in rs],
        [r.to for r in rs],
        [r.campaign_id for r in rs],
        [r.trigger_id for r in rs],
        [r.step for r in rs],
        [",".join(r.channels) for r in rs],
        [r.template_id for r in rs],
        [_json({k: str(v) for k, v in r.templates.items()}) for r in rs],
        [_json(r.content.model_dump()) if r.content else None for r in rs],
        [_json(r.variables) for r in rs],
        [r.is_ad for r in rs],
        [r.night_policy for r in rs],
        list(enqueued_at),
    )
    return ids, {r[0] for r in rows}


@dataclass(slots=True)
class MessageRow:
    """What the pipeline reads of a message it works on."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    kind: str
    profile_id: uuid.UUID | None
    address: str | None
    campaign_id: uuid.UUID | None
    chain: list[str]
    chain_pos: int
    tries: int
    template_id: uuid.UUID | None
    templates: dict[str, Any]
    content: dict[str, Any] | None
    variables: dict[str, Any]
    is_ad: bool
    night_policy: str
    status: str
    reason: str | None
    channel: str | None
    not_before: datetime | None

    @classmethod
    def of(cls, m: Message) -> MessageRow:
        return cls(**{f: getattr(m, f) for f in cls.__slots__})


_CLAIM = """
UPDATE dispatcher.messages m SET status = 'sending', updated_at = $2
WHERE m.id IN (
    SELECT id FROM dispatcher.messages
    WHERE id = ANY($1::uuid[]) AND status IN ('queued', 'deferred') AND coalesce(not_before, $2) <= $2
    FOR UPDATE SKIP LOCKED)
RETURNING m.id, m.workspace_id, m.kind, m.profile_id, m.address, m.campaign_id, m.chain, m.chain_pos, m.tries,
    m.template_id, m.templates::text, m.content::text, m.variables::text, m.is_ad, m.night_policy, m.status,
    m.reason, m.channel, m.not_before
"""


async def claim_due(session: AsyncSession, ids: Sequence[uuid.UUID], now: datetime) -> list[MessageRow]:
    """Take the waiting ones of `ids` whose time has come: they become `sending` (row-locked, so two
    workers never take the same message)."""
    if not ids:
        return []
    conn = await driver_connection(session)
    rows = await conn.fetch(_CLAIM, list(ids), now)
    return [
        MessageRow(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            list(r[6]),
            r[7],
            r[8],
            r[9],
            orjson.loads(r[10]),
            orjson.loads(r[11]) if r[11] else None,
            orjson.loads(r[12]),
            r[13],
            r[14],
            "sending",
            r[16],
            r[17],
            r[18],
        )
        for r in rows
    ]


async def due_message_ids(
    session: AsyncSession, now: datetime, limit: int, *, stranded_after: datetime | None = None
) -> list[uuid.UUID]:
    """Waiting messages whose time has come; with `stranded_after`, also queued ones nobody took
    since then (their job was lost): nothing vanishes."""
    due = Message.not_before <= now
    if stranded_after is not None:
        due = or_(due, and_(Message.not_before.is_(None), Message.updated_at < stranded_after))
    stmt = (
        select(Message.id)
        .where(Message.status.in_(("queued", "deferred")), due)
        .order_by(Message.not_before.nulls_first())
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars().all())


async def next_seqs(session: AsyncSession, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
    ids = list(ids)
    if not ids:
        return {}
    stmt = (
        select(DeliveryAttempt.message_id, func.max(DeliveryAttempt.seq))
        .where(DeliveryAttempt.message_id.in_(list(ids)))
        .group_by(DeliveryAttempt.message_id)
    )
    return {mid: seq + 1 for mid, seq in (await session.execute(stmt)).all()}


_INSERT_ATTEMPTS = """
INSERT INTO dispatcher.delivery_attempts (id, message_id, workspace_id, seq, channel, provider, provider_key,
    provider_fallback, state, outcome, code, detail, cost_krw, payload, submitted_at, answered_at)
SELECT u.id, u.message_id, u.workspace_id, u.seq, u.channel, u.provider, u.provider_key, u.provider_fallback,
    u.state, u.outcome, u.code, u.detail, 0, u.payload::jsonb, $1::timestamptz,
    CASE WHEN u.state = 'done' THEN $1::timestamptz END
FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::int[], $6::text[], $7::text[], $8::text[], $9::bool[],
    $10::text[], $11::text[], $12::text[], $13::text[], $14::text[])
    AS u(id, message_id, workspace_id, seq, channel, provider, provider_key, provider_fallback, state,
         outcome, code, detail, payload)
"""


async def insert_attempts(session: AsyncSession, rows: Sequence[Mapping[str, Any]], now: datetime) -> None:
    if not rows:
        return
    conn = await driver_connection(session)
    await conn.execute(
        _INSERT_ATTEMPTS,
        now,
        *(
            [r[k] for r in rows]
            for k in (
                "id",
                "message_id",
                "workspace_id",
                "seq",
                "channel",
                "provider",
                "provider_key",
                "provider_fallback",
                "state",
                "outcome",
                "code",
                "detail",
            )
        ),
        [r["payload"] for r in rows],
    )


_UPDATE_MESSAGES = """
UPDATE dispatcher.messages m
SET status = u.status, reason = u.reason, not_before = u.not_before, chain_pos = u.chain_pos, tries = u.tries,
    channel = u.channel, updated_at = $1::timestamptz,
    finished_at = CASE WHEN u.finished THEN $1::timestamptz END
FROM unnest($2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::int[], $7::int[], $8::text[],
    $9::bool[]) AS u(id, status, reason, not_before, chain_pos, tries, channel, finished)
WHERE m.id = u.id
"""


async def update_messages(session: AsyncSession, rows: Sequence[Mapping[str, Any]], now: datetime) -> None:
    if not rows:
        return
    conn = await driver_connection(session)
    await conn.execute(
        _UPDATE_MESSAGES,
        now,
        *(
            [r[k] for r in rows]
            for k in ("id", "status", "reason", "not_before", "chain_pos", "tries", "channel")
        ),
        [r["finished_at"] is not None for r in rows],
    )


async def refresh_costs(session: AsyncSession, ids: Sequence[uuid.UUID]) -> None:
    """A message's cost is the sum of its attempts' costs (a fallback SMS is paid on top)."""
    if ids:
        await session.execute(
            text(
                "UPDATE dispatcher.messages m SET cost_krw = s.total FROM ("
                " SELECT message_id, COALESCE(SUM(cost_krw), 0) AS total FROM dispatcher.delivery_attempts"
                " WHERE message_id = ANY(:ids) GROUP BY message_id) s"
                " WHERE m.id = s.message_id AND m.cost_krw IS DISTINCT FROM s.total"
            ),
            {"ids": list(ids)},
        )


async def submitting_attempts(
    session: AsyncSession, *, message_ids: Sequence[uuid.UUID] | None = None, before: datetime | None = None
) -> list[DeliveryAttempt]:
    """Attempts left `submitting`: a worker died between handing them over and recording the answer."""
    stmt = select(DeliveryAttempt).where(DeliveryAttempt.state == "submitting")
    if message_ids is not None:
        stmt = stmt.where(DeliveryAttempt.message_id.in_(list(message_ids)))
    if before is not None:
        stmt = stmt.where(DeliveryAttempt.submitted_at < before)
    stmt = stmt.with_for_update(skip_locked=True)
    return list((await session.execute(stmt)).scalars().all())


async def pending_attempts(session: AsyncSession, before: datetime, limit: int) -> list[DeliveryAttempt]:
    stmt = (
        select(DeliveryAttempt)
        .where(
            DeliveryAttempt.state == "pending",
            DeliveryAttempt.provider_ref.is_not(None),
            func.coalesce(DeliveryAttempt.answered_at, DeliveryAttempt.submitted_at) < before,
        )
        .order_by(DeliveryAttempt.submitted_at)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars().all())


async def touch_pending(
    session: AsyncSession, attempt_ids: Sequence[uuid.UUID], now: datetime, give_up_before: datetime
) -> None:
    """Polled without an answer: ask again later; an attempt submitted before `give_up_before` is
    closed (its message keeps the status its submission gave it)."""
    if attempt_ids:
        conn = await driver_connection(session)
        await conn.execute(
            "UPDATE dispatcher.delivery_attempts SET answered_at = $2,"
            " state = CASE WHEN submitted_at < $3 THEN 'done' ELSE state END"
            " WHERE id = ANY($1::uuid[]) AND state = 'pending'",
            list(attempt_ids),
            now,
            give_up_before,
        )


async def messages_by_id(
    session: AsyncSession, ids: Iterable[uuid.UUID], *, lock: bool = False
) -> dict[uuid.UUID, Message]:
    stmt = select(Message).where(Message.id.in_(list(ids)))
    if lock:
        stmt = stmt.with_for_update()
    return {m.id: m for m in (await session.execute(stmt)).scalars().all()}


async def timezones(session: AsyncSession, workspace_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    stmt = select(Workspace.id, Workspace.timezone).where(Workspace.id.in_(list(set(workspace_ids))))
    return {wid: tz for wid, tz in (await session.execute(stmt)).all()}


# --- reports ------------------------------------------------------------------------------------


_LOCK_REFS = """
SELECT pg_advisory_xact_lock(k) FROM (
    SELECT DISTINCT hashtextextended(u.provider || ':' || u.ref, 0) AS k
    FROM unnest($1::text[], $2::text[]) AS u(provider, ref) ORDER BY 1) AS s
"""


async def lock_refs(session: AsyncSession, provider: str, refs: Sequence[str]) -> None:
    """Serialize "record a submission" and "receive its report" per provider ref (transaction-scoped
    advisory locks, taken in one order). Without it a report arriving while its submission is being
    recorded could be missed by both: each looks for the other before either has committed."""
    await lock_provider_refs(session, {provider: refs})


async def lock_provider_refs(session: AsyncSession, refs: Mapping[str, Sequence[str]]) -> None:
    """`lock_refs` for several providers in one statement (one order over all of them)."""
    providers = [p for p, provider_refs in refs.items() for _ in provider_refs]
    if providers:
        conn = await driver_connection(session)
        await conn.execute(
            _LOCK_REFS, providers, [r for provider_refs in refs.values() for r in provider_refs]
        )


_RECORD = """
WITH attempts AS (
    UPDATE dispatcher.delivery_attempts a
    SET state = u.state, outcome = u.outcome, code = u.code, detail = u.detail, provider_ref = u.ref,
        cost_krw = u.cost, answered_at = $1::timestamptz
    FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[])
        AS u(id, state, outcome, code, detail, ref, cost)
    WHERE a.id = u.id
    RETURNING 1
), messages AS (
    UPDATE dispatcher.messages m
    SET status = u.status, reason = u.reason, not_before = u.not_before, chain_pos = u.chain_pos,
        tries = u.tries, channel = u.channel, updated_at = $1::timestamptz,
        finished_at = CASE WHEN u.finished THEN $1::timestamptz END
    FROM unnest($9::uuid[], $10::text[], $11::text[], $12::timestamptz[], $13::int[], $14::int[],
        $15::text[], $16::bool[]) AS u(id, status, reason, not_before, chain_pos, tries, channel, finished)
    WHERE m.id = u.id
    RETURNING 1
)
SELECT (SELECT count(*) FROM attempts), (SELECT count(*) FROM messages), EXISTS (
    SELECT 1 FROM dispatcher.delivery_reports r, unnest($17::text[], $18::text[]) AS u(provider, ref)
    WHERE r.applied_at IS NULL AND r.provider = u.provider AND r.provider_ref = u.ref)
"""


async def record_answers(
    session: AsyncSession,
    attempts: Sequence[Mapping[str, Any]],
    messages: Sequence[Mapping[str, Any]],
    refs: Mapping[str, Sequence[str]],
    now: datetime,
) -> bool:
    """The providers' answers in one statement: the attempts' new states, the messages' new fields
    (as `update_messages`), and a look whether any report of `refs` is waiting to be applied. Call it
    after `lock_provider_refs`: its snapshot then sees every report stored before the locks were
    granted. Returns whether one is waiting."""
    if not attempts and not messages and not any(refs.values()):
        return False
    conn = await driver_connection(session)
    row = await conn.fetchrow(
        _RECORD,
        now,
        *(
            [r[k] for r in attempts]
            for k in ("id", "state", "outcome", "code", "detail", "provider_ref", "cost_krw")
        ),
        *(
            [r[k] for r in messages]
            for k in ("id", "status", "reason", "not_before", "chain_pos", "tries", "channel")
        ),
        [r["finished_at"] is not None for r in messages],
        [p for p, provider_refs in refs.items() for _ in provider_refs],
        [r for provider_refs in refs.values() for r in provider_refs],
    )
    return bool(row[2])


async def store_reports(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Keep every report (a repeat of the same fact is dropped by the unique key)."""
    if rows:
        stmt = insert(DeliveryReport).on_conflict_do_nothing(constraint="uq_delivery_reports_fact")
        await session.execute(stmt, list(rows))


async def unapplied_reports(
    session: AsyncSession,
    *,
    provider: str | None = None,
    refs: Sequence[str] | None = None,
    received_before: datetime | None = None,
    limit: int = 1000,
) -> list[DeliveryReport]:
    stmt = select(DeliveryReport).where(DeliveryReport.applied_at.is_(None))
    if provider is not None:
        stmt = stmt.where(DeliveryReport.provider == provider)
    if refs is not None:
        stmt = stmt.where(DeliveryReport.provider_ref.in_(list(refs)))
    if received_before is not None:
        stmt = stmt.where(DeliveryReport.received_at < received_before)
    stmt = stmt.order_by(DeliveryReport.occurred_at).limit(limit).with_for_update(skip_locked=True)
    return list((await session.execute(stmt)).scalars().all())


async def attempts_by_ref(
    session: AsyncSession, provider: str, refs: Sequence[str]
) -> dict[str, DeliveryAttempt]:
    stmt = (
        select(DeliveryAttempt)
        .where(DeliveryAttempt.provider == provider, DeliveryAttempt.provider_ref.in_(list(refs)))
        .with_for_update()
    )
    return {a.provider_ref or "": a for a in (await session.execute(stmt)).scalars().all()}


async def mark_reports_applied(session: AsyncSession, ids: Sequence[uuid.UUID], now: datetime) -> None:
    if ids:
        await session.execute(
            update(DeliveryReport)
            .where(DeliveryReport.id.in_(list(ids)))
            .values(applied_at=now)
            .execution_options(synchronize_session=False)
        )


# --- reads for the API ----------------------------------------------------------------------------


async def get_message(
    session: AsyncSession, workspace_id: uuid.UUID, message_id: uuid.UUID
) -> Message | None:
    stmt = select(Message).where(Message.workspace_id == workspace_id, Message.id == message_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def attempts_of(session: AsyncSession, message_id: uuid.UUID) -> list[DeliveryAttempt]:
    stmt = (
        select(DeliveryAttempt).where(DeliveryAttempt.message_id == message_id).order_by(DeliveryAttempt.seq)
    )
    return list((await session.execute(stmt)).scalars().all())


# --- the rendered message, kept with its attempt for a resubmission after a crash -----------------


def outgoing_json(out: Outgoing) -> str:
    """The JSON text of a rendered message, its fields by name: orjson serializes the dataclasses,
    enums and uuids itself, `_plain` what it does not know (asyncpg's uuid type, other mappings)."""
    return orjson.dumps(out, default=_plain).decode()


def _plain(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def outgoing_from_json(data: Mapping[str, Any]) -> Outgoing:
    fields = dict(data)
    fallback = fields.pop("provider_fallback", None)
    return Outgoing(
        **{
            **fields,
            "message_id": uuid.UUID(fields["message_id"]),
            "channel": Channel(fields["channel"]),
            "buttons": tuple(fields.get("buttons") or ()),
            "provider_fallback": ProviderFallback(**fallback) if fallback else None,
        }
    )
